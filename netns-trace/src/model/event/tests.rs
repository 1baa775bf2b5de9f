//! CniExec: from the kernel record, CNI_ARGS lookups, the truncation set's JSON.
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
