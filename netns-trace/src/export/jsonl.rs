//! JSON lines: one object per event, exactly the event's serde form (`ts_ns`, `pid`, `tgid`,
//! `comm`, `type` and the body's fields), plus `time` (RFC 3339 UTC) when a clock base is
//! known. Nothing else is added or renamed, so log pipelines can rely on the shape.

use std::io::{self, Write};

use serde_json::Value;

use super::{ClockBase, rfc3339};
use crate::model::Event;

/// Writes each event as one line of JSON and returns how many lines were written.
///
/// With `clock` (the trace header's clock base) every line also gets `"time"`.
pub fn write_jsonl<W: Write>(
    events: impl IntoIterator<Item = Event>,
    clock: Option<ClockBase>,
    out: W,
) -> io::Result<u64> {
    let mut out = io::BufWriter::new(out);
    let mut lines = 0u64;
    for event in events {
        let mut value = serde_json::to_value(&event).map_err(io::Error::other)?;
        if let (Some(clock), Value::Object(fields)) = (clock, &mut value) {
            fields.insert(
                "time".to_string(),
                Value::String(rfc3339(clock.to_realtime_ns(event.ts_ns))),
            );
        }
        serde_json::to_writer(&mut out, &value).map_err(io::Error::other)?;
        out.write_all(b"\n")?;
        lines += 1;
    }
    out.flush()?;
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::model::*;

    fn sample() -> Vec<Event> {
        vec![
            Event {
                ts_ns: 2_000,
                pid: 42,
                tgid: 42,
                comm: Comm::from_str_lossy("unshare"),
                body: EventBody::NetnsCreated(NetnsCreated {
                    netns: NsId::new(7, 4026532301),
                    parent: NsId::new(1, 4026531840),
                    net_ptr: 0xffff_8880_0000_1000,
                    source: CreatedBy::Unshare,
                    clone_flags: 0x4000_0000,
                }),
            },
            Event::observed(
                3_000,
                EventBody::Arp(ArpPacket {
                    netns: NsId::new(7, 4026532301),
                    dir: Direction::Rx,
                    op: 1,
                    ifindex: 2,
                    sender_ip: Ipv4Addr::new(10, 0, 0, 1),
                    sender_mac: Mac([2, 0, 0, 0, 0, 1]),
                    target_ip: Ipv4Addr::new(10, 0, 0, 2),
                    target_mac: Mac::default(),
                    hook: Hook::Tracepoint,
                }),
            ),
        ]
    }

    #[test]
    fn one_object_per_line_with_wall_time() {
        let mut out = Vec::new();
        let n = write_jsonl(
            sample(),
            Some(ClockBase {
                monotonic_ns: 1_000,
                realtime_ns: 1_700_000_000_000_000_000,
            }),
            &mut out,
        )
        .unwrap();
        assert_eq!(n, 2);
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(text.ends_with('\n'));

        let first: Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(first["type"], "netns_created");
        assert_eq!(first["ts_ns"], 2_000);
        assert_eq!(first["comm"], "unshare");
        assert_eq!(first["netns"]["inum"], 4026532301u64);
        assert_eq!(first["source"], "unshare");
        assert_eq!(first["time"], "2023-11-14T22:13:20.000001000Z");

        let second: Value = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(second["type"], "arp");
        assert_eq!(second["sender_mac"], "02:00:00:00:00:01");
        assert_eq!(second["sender_ip"], "10.0.0.1");
        assert_eq!(second["dir"], "rx");
        assert_eq!(second["time"], "2023-11-14T22:13:20.000002000Z");
    }

    #[test]
    fn lines_round_trip_to_the_same_events_without_clock() {
        let mut out = Vec::new();
        write_jsonl(sample(), None, &mut out).unwrap();
        let back: Vec<Event> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|line| {
                let value: Value = serde_json::from_str(line).unwrap();
                assert!(value.get("time").is_none());
                serde_json::from_value(value).unwrap()
            })
            .collect();
        assert_eq!(back, sample());
    }

    #[test]
    fn snapshots_serialize_as_one_line() {
        let snapshot = Event::observed(
            5,
            EventBody::Snapshot(Box::new(Snapshot {
                phase: SnapshotPhase::Start,
                namespaces: vec![],
                init_netns: NsId::new(1, 4026531840),
                init_mnt_ns: 0,
            })),
        );
        let mut out = Vec::new();
        assert_eq!(write_jsonl([snapshot], None, &mut out).unwrap(), 1);
        let value: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(value["type"], "snapshot");
        assert_eq!(value["phase"], "start");
    }
}
