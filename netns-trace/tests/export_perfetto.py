#!/usr/bin/env python3
"""Check a netns-trace Perfetto export with Perfetto's own protobuf classes.

Usage: export_perfetto.py FILE [--namespaces N] [--leaked N] [--min-arp N]

Exit status 0: the file parses as perfetto.protos.Trace and is structurally sound for
ui.perfetto.dev. Exit 1: a check failed (reasons on stderr). Exit 77: the `perfetto` or
`protobuf` Python package is missing (install: see docs/export.md).
"""
import argparse
import collections
import sys

try:
    from google.protobuf.message import DecodeError
    from google.protobuf.unknown_fields import UnknownFieldSet
    from perfetto.protos.perfetto.trace import perfetto_trace_pb2 as pb
except ImportError as err:  # the caller skips on 77
    print(f"perfetto python package unavailable: {err}", file=sys.stderr)
    sys.exit(77)

ROOT_NAME = "network namespaces"
MONOTONIC = pb.BUILTIN_CLOCK_MONOTONIC


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("file")
    parser.add_argument("--namespaces", type=int, help="exact number of namespace tracks")
    parser.add_argument("--leaked", type=int, help="exact number of LEAKED namespace tracks")
    parser.add_argument("--min-arp", type=int, default=0, help="minimum number of ARP instants")
    args = parser.parse_args()

    errors = []
    trace = pb.Trace()
    with open(args.file, "rb") as f:
        data = f.read()
    try:
        trace.ParseFromString(data)
    except DecodeError as err:
        errors.append(f"not a perfetto.protos.Trace: {err}")
        return report(errors)
    # A field number the schema does not know (a typo in the writer) parses silently as an
    # unknown field; refuse it.
    for path in unknown_fields(trace, "Trace"):
        errors.append(f"unknown field {path}")
    if not trace.packet:
        errors.append("no packets")
        return report(errors)

    first = trace.packet[0]
    if not first.sequence_flags & pb.TracePacket.SEQ_INCREMENTAL_STATE_CLEARED:
        errors.append("first packet does not set SEQ_INCREMENTAL_STATE_CLEARED")
    if not first.HasField("clock_snapshot") or first.clock_snapshot.primary_trace_clock != MONOTONIC:
        errors.append("first packet is not a clock snapshot with MONOTONIC as the trace clock")
    sequences = {p.trusted_packet_sequence_id for p in trace.packet}
    if len(sequences) != 1 or 0 in sequences:
        errors.append(f"expected one non-zero trusted_packet_sequence_id, got {sequences}")

    tracks = {}
    for packet in trace.packet:
        if packet.HasField("track_descriptor"):
            desc = packet.track_descriptor
            if not desc.uuid:
                errors.append(f"track {desc.name!r} has no uuid")
            if desc.uuid in tracks:
                errors.append(f"duplicate track uuid {desc.uuid}")
            tracks[desc.uuid] = desc
    for desc in tracks.values():
        if desc.HasField("parent_uuid") and desc.parent_uuid not in tracks:
            errors.append(f"track {desc.name!r} has undeclared parent {desc.parent_uuid}")

    roots = [d for d in tracks.values() if d.name == ROOT_NAME and not d.HasField("parent_uuid")]
    if len(roots) != 1:
        errors.append(f"expected one root track {ROOT_NAME!r}, got {len(roots)}")
        return report(errors)
    root = roots[0].uuid
    namespaces = [
        d for d in tracks.values()
        if d.parent_uuid == root and (d.name.startswith("netns ") or d.name.startswith("LEAKED: netns "))
    ]
    leaked = [d for d in namespaces if d.name.startswith("LEAKED: ")]
    if not namespaces:
        errors.append("no namespace tracks")
    if args.namespaces is not None and len(namespaces) != args.namespaces:
        errors.append(f"expected {args.namespaces} namespace tracks, got {[d.name for d in namespaces]}")
    if args.leaked is not None and len(leaked) != args.leaked:
        errors.append(f"expected {args.leaked} LEAKED tracks, got {[d.name for d in leaked]}")

    depth = collections.Counter()
    arp = 0
    last_ts = 0
    slices = instants = 0
    for packet in trace.packet:
        if not packet.HasField("track_event"):
            continue
        event = packet.track_event
        name = tracks[event.track_uuid].name if event.track_uuid in tracks else None
        if name is None:
            errors.append(f"track event {event.name!r} on undeclared track {event.track_uuid}")
            continue
        if packet.timestamp_clock_id != MONOTONIC:
            errors.append(f"event {event.name!r} not on CLOCK_MONOTONIC")
        if packet.timestamp < last_ts:
            errors.append(f"event {event.name!r} at {packet.timestamp} goes back in time")
        last_ts = packet.timestamp
        if event.type == pb.TrackEvent.TYPE_SLICE_BEGIN:
            depth[event.track_uuid] += 1
            slices += 1
        elif event.type == pb.TrackEvent.TYPE_SLICE_END:
            depth[event.track_uuid] -= 1
            if depth[event.track_uuid] < 0:
                errors.append(f"slice end without begin on {name!r} at {packet.timestamp}")
                depth[event.track_uuid] = 0
        elif event.type == pb.TrackEvent.TYPE_INSTANT:
            instants += 1
            if event.name.startswith("ARP "):
                arp += 1
                keys = {a.name for a in event.debug_annotations}
                missing = {"dir", "sender_ip", "sender_mac", "target_ip"} - keys
                if missing:
                    errors.append(f"ARP instant {event.name!r} lacks annotations {missing}")
        else:
            errors.append(f"unexpected event type {event.type} on {name!r}")
    for uuid, open_slices in depth.items():
        if open_slices:
            errors.append(f"{open_slices} slice(s) left open on {tracks[uuid].name!r}")
    used = {p.track_event.track_uuid for p in trace.packet if p.HasField("track_event")}
    for desc in namespaces:
        if desc.uuid not in used:
            if not desc.name.startswith("LEAKED: "):
                errors.append(f"namespace track {desc.name!r} has no events")
    if arp < args.min_arp:
        errors.append(f"expected at least {args.min_arp} ARP instants, got {arp}")

    if not errors:
        print(f"ok: {len(trace.packet)} packets, {len(tracks)} tracks, {len(namespaces)} namespaces "
              f"({len(leaked)} leaked), {slices} slices, {instants} instants ({arp} ARP)")
    return report(errors)


def unknown_fields(message, path):
    for field in UnknownFieldSet(message):
        yield f"{path}.{field.field_number}"
    for descriptor, value in message.ListFields():
        if descriptor.message_type is None:
            continue
        items = value if descriptor.is_repeated else [value]
        for index, item in enumerate(items):
            yield from unknown_fields(item, f"{path}.{descriptor.name}[{index}]")


def report(errors) -> int:
    for error in errors:
        print(f"FAIL: {error}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
