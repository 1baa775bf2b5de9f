//! Arbitrary bytes as an event-batch payload, past the CRC that shields the record decoder
//! in `trace_reader`: decoding must never panic, and whatever decodes must re-encode and
//! decode to the same events.
#![no_main]

use std::collections::VecDeque;

use libfuzzer_sys::fuzz_target;
use netns_trace::trace::codec::{FrameDecoder, FrameEncoder, PayloadStats};

fuzz_target!(|data: &[u8]| {
    let mut events = VecDeque::new();
    let mut stats = PayloadStats::default();
    let _ = FrameDecoder::default().decode(data, &mut events, &mut stats);
    let mut encoder = FrameEncoder::default();
    for ev in &events {
        encoder.push(ev, usize::MAX).expect("no limit");
    }
    let mut again = VecDeque::new();
    let mut stats = PayloadStats::default();
    FrameDecoder::default()
        .decode(&encoder.buf, &mut again, &mut stats)
        .expect("re-encoded payload decodes");
    assert_eq!(stats.bad_events + stats.unknown_records, 0);
    assert_eq!(events, again);
});
