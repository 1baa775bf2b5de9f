//! CniExec: from the kernel record, CNI_ARGS lookups, the truncation set's JSON. CniExit: the
//! wait status from the SIGCHLD's code and status.
use netns_trace_common::{self as abi, EventKind, cni_vars};

use super::*;
use crate::probes::decode::{DecodeError, decode};

fn copy<const N: usize>(s: &str) -> [u8; N] {
    let mut b = [0u8; N];
    b[..s.len()].copy_from_slice(s.as_bytes());
    b
}

fn record(present: u32, truncated: u32) -> abi::CniExec {
    abi::CniExec {
        hdr: EventHeader {
            kind: EventKind::CniExec as u16,
            size: size_of::<abi::CniExec>() as u16,
            ts_ns: 42,
            pid: 7001,
            tgid: 7001,
            netns: abi::NetnsId {
                cookie: 1,
                inum: 4026531840,
                _pad: 0,
            },
            comm: copy("host-local"),
            ..Default::default()
        },
        present,
        truncated,
        verb: copy("DEL"),
        container_id: copy("0123abcd"),
        // Bytes of a variable the environment did not hold are never read.
        netns: copy("stale"),
        ifname: copy("eth0"),
        args: copy("K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_U"),
        path: copy("/usr/lib/cni/host-local"),
    }
}

fn bytes(r: &abi::CniExec) -> Vec<u8> {
    // SAFETY: a #[repr(C)] record of integers, read as its bytes.
    unsafe { std::slice::from_raw_parts((r as *const abi::CniExec).cast::<u8>(), size_of_val(r)) }
        .to_vec()
}

#[test]
fn a_cni_exec_record_decodes_to_the_variables_it_held() {
    let present = cni_vars::VERB | cni_vars::CONTAINER_ID | cni_vars::IFNAME | cni_vars::ARGS;
    let ev = decode(&bytes(&record(present, cni_vars::ARGS))).unwrap();
    assert_eq!((ev.pid, ev.comm.as_str().as_ref()), (7001, "host-local"));
    assert_eq!(
        ev.body,
        EventBody::CniExec(Box::new(CniExec {
            netns: NsId::new(1, 4026531840),
            verb: "DEL".into(),
            container_id: Some("0123abcd".into()),
            netns_path: None,
            if_name: Some("eth0".into()),
            cni_args: Some("K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_U".into()),
            path: "/usr/lib/cni/host-local".into(),
            truncated: [CniValue::CniArgs].into_iter().collect(),
        }))
    );
}

#[test]
fn a_cni_exec_record_without_cni_command_or_with_unknown_bits_is_refused() {
    let kind = EventKind::CniExec as u16;
    for (present, truncated, bad) in [
        (cni_vars::CONTAINER_ID, 0, cni_vars::CONTAINER_ID),
        (cni_vars::VERB | 64, 0, cni_vars::VERB | 64),
        (
            cni_vars::VERB | cni_vars::PATH,
            0,
            cni_vars::VERB | cni_vars::PATH,
        ),
        (cni_vars::VERB, 64, 64),
    ] {
        assert_eq!(
            decode(&bytes(&record(present, truncated))),
            Err(DecodeError::BadValue {
                kind,
                value: u64::from(bad)
            }),
            "present {present:#x}, truncated {truncated:#x}"
        );
    }
}

#[test]
fn cni_args_name_the_pod_unless_the_pair_was_cut() {
    let ev = decode(&bytes(&record(
        cni_vars::VERB | cni_vars::ARGS,
        cni_vars::ARGS,
    )))
    .unwrap();
    let EventBody::CniExec(e) = ev.body else {
        panic!("{ev:?}")
    };
    assert_eq!(e.cni_arg("K8S_POD_NAMESPACE"), Some("default"));
    assert_eq!(e.cni_arg("K8S_POD_NAME"), Some("web-0"));
    // The last pair was cut: "K8S_POD_U" is not a key, and no value is trusted there.
    assert_eq!(e.cni_arg("K8S_POD_UID"), None);
    assert_eq!(e.cni_arg("K8S_POD_U"), None);
    let whole = CniExec {
        truncated: CniTruncated::default(),
        cni_args: Some("IgnoreUnknown=1;K8S_POD_UID=9d3c".into()),
        ..*e
    };
    assert_eq!(whole.cni_arg("K8S_POD_UID"), Some("9d3c"));
    assert_eq!(whole.cni_arg("IgnoreUnknown"), Some("1"));
    assert_eq!(whole.cni_arg("K8S_POD_NAME"), None);
}

#[test]
fn truncation_reads_as_field_names_in_json() {
    let cut: CniTruncated = [CniValue::NetnsPath, CniValue::Path].into_iter().collect();
    let json = serde_json::to_string(&cut).unwrap();
    assert_eq!(json, r#"["netns_path","path"]"#);
    assert_eq!(serde_json::from_str::<CniTruncated>(&json).unwrap(), cut);
    assert!(serde_json::from_str::<CniTruncated>(r#"["argv"]"#).is_err());
    assert!(CniTruncated::default().is_empty());
}

fn exit_record(code: i32, status: i32) -> Vec<u8> {
    let r = abi::CniExit {
        hdr: EventHeader {
            kind: EventKind::CniExit as u16,
            size: size_of::<abi::CniExit>() as u16,
            ts_ns: 43,
            pid: 7002,
            tgid: 7001,
            comm: copy("bridge"),
            ..Default::default()
        },
        code,
        status,
        parent_tgid: 812,
        _pad: 0,
    };
    // SAFETY: a #[repr(C)] record of integers, read as its bytes.
    unsafe { std::slice::from_raw_parts((&r as *const abi::CniExit).cast::<u8>(), size_of_val(&r)) }
        .to_vec()
}

#[test]
fn a_cni_exit_record_decodes_to_the_wait_status_its_parent_reads() {
    let exit = |code, status| match decode(&exit_record(code, status)).unwrap().body {
        EventBody::CniExit(e) => e,
        other => panic!("{other:?}"),
    };
    let ok = exit(abi::cld::EXITED, 0);
    assert_eq!((ok.wait_status, ok.parent), (0, 812));
    assert!(ok.succeeded());
    let failed = exit(abi::cld::EXITED, 1);
    assert_eq!(failed.wait_status, 0x100);
    assert_eq!((failed.exit_code(), failed.signal()), (Some(1), None));
    assert!(!failed.succeeded());
    let killed = exit(abi::cld::KILLED, 9);
    assert_eq!(killed.wait_status, 9);
    assert_eq!((killed.exit_code(), killed.signal()), (None, Some(9)));
    assert!(!killed.core_dumped());
    let dumped = exit(abi::cld::DUMPED, 11);
    assert_eq!(dumped.wait_status, 11 | 0x80);
    assert_eq!((dumped.signal(), dumped.core_dumped()), (Some(11), true));
}

#[test]
fn a_cni_exit_record_with_an_unknown_code_or_status_is_refused() {
    let kind = EventKind::CniExit as u16;
    for (code, status) in [
        (0, 0),
        (4, 19),
        (abi::cld::EXITED, 256),
        (abi::cld::EXITED, -1),
        (abi::cld::KILLED, 0),
        (abi::cld::DUMPED, 0x7f),
    ] {
        assert_eq!(
            decode(&exit_record(code, status)),
            Err(DecodeError::BadValue {
                kind,
                value: u64::from(code as u32) << 32 | u64::from(status as u32),
            }),
            "code {code}, status {status}"
        );
    }
}
