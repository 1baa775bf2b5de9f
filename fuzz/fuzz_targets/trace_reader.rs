//! Arbitrary bytes into the trace reader: it must never panic, never allocate without bound,
//! and the streaming (chunked file) path must agree with the in-memory path.
#![no_main]

use std::io::Read;

use libfuzzer_sys::fuzz_target;
use netns_trace::trace::TraceReader;

/// Hands out the input a few bytes at a time, so frames straddle every window refill.
struct Trickle {
    data: Vec<u8>,
    pos: usize,
}

impl Read for Trickle {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let rest = &self.data[self.pos..];
        // Chunk sizes vary with the data so the fuzzer explores refill positions too.
        let n = buf
            .len()
            .min(rest.len())
            .min(1 + rest.first().map_or(0, |b| *b as usize % 13));
        buf[..n].copy_from_slice(&rest[..n]);
        self.pos += n;
        Ok(n)
    }
}

fuzz_target!(|data: &[u8]| {
    let in_memory = TraceReader::from_bytes(data.to_vec());
    let streamed = TraceReader::from_reader(Trickle {
        data: data.to_vec(),
        pos: 0,
    });
    match (in_memory, streamed) {
        (Ok(mut a), Ok(mut b)) => {
            let events_a: Vec<_> = a.by_ref().collect();
            let events_b: Vec<_> = b.by_ref().collect();
            assert_eq!(events_a, events_b);
            assert_eq!(a.damage(), b.damage());
            assert_eq!(a.meta(), b.meta());
            assert!(a.damage().skipped_bytes() <= data.len() as u64);
            assert_eq!(a.events_read(), events_a.len() as u64);
        }
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
        (a, b) => panic!(
            "in-memory and streamed readers disagree: {:?} vs {:?}",
            a.err(),
            b.err()
        ),
    }
});
