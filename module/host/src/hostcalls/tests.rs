use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use wasmbridge_abi::{AbiVersion, HOSTCALLS, Support};
use wasmtime::{Extern, Store};

use crate::context::{HostState, PluginInfo};
use crate::plugin::FailurePolicy;
use crate::runtime::Runtime;

fn runtime() -> Runtime {
    Runtime::new().expect("engine")
}

#[test]
fn every_catalogue_entry_is_registered_exactly_once() {
    let rt = runtime();
    let mut counts: HashMap<(&str, &str), (usize, bool)> = HashMap::new();
    for r in rt.registrations() {
        let e = counts.entry((r.module, r.name)).or_insert((0, r.stub));
        e.0 += 1;
    }
    let mut expected = 0;
    for spec in HOSTCALLS {
        for module in spec.namespace.module_names() {
            expected += 1;
            let Some((count, stub)) = counts.get(&(*module, spec.name)) else {
                panic!(
                    "{module}.{} is in the catalogue but not registered",
                    spec.name
                );
            };
            assert_eq!(*count, 1, "{module}.{} registered {count} times", spec.name);
            let unimplemented = matches!(spec.support, Support::Unimplemented(_));
            assert_eq!(
                *stub,
                unimplemented,
                "{module}.{}: catalogue says {:?} but the linker has {}",
                spec.name,
                spec.support,
                if *stub { "a stub" } else { "an implementation" }
            );
        }
    }
    assert_eq!(
        rt.registrations().len(),
        expected,
        "the linker has registrations the catalogue does not list"
    );
}

#[test]
fn registered_signatures_match_the_catalogue() {
    let rt = runtime();
    let info = Arc::new(PluginInfo {
        name: "t".into(),
        root_id: String::new(),
        vm_id: String::new(),
        configuration: Bytes::new(),
        vm_configuration: Bytes::new(),
        abi: AbiVersion::V0_2_1,
        static_properties: Default::default(),
        shared: Default::default(),
        queues: Default::default(),
        upstreams: Arc::new(crate::callout::NoUpstreams),
        foreign: Default::default(),
        metrics: Default::default(),
        host_metrics: None,
        limits: Default::default(),
        log_only: false,
        cap_hits: Default::default(),
        failures: Default::default(),
        failure_policy: FailurePolicy::FailClosed,
        policy: Default::default(),
    });
    let (link, _events) = crate::root::RootLink::new();
    let mut store = Store::new(rt.engine(), HostState::new(vec![(info, link)], 0));
    for spec in HOSTCALLS {
        for module in spec.namespace.module_names() {
            let Ok(Extern::Func(f)) = rt.linker().get(&mut store, module, spec.name) else {
                panic!("{module}.{} missing", spec.name);
            };
            let ty = f.ty(&store);
            let want = super::func_type(rt.engine(), spec.params, spec.results);
            assert!(
                wasmtime::FuncType::eq(&ty, &want),
                "{module}.{}: linked {ty:?}, catalogue {want:?}",
                spec.name
            );
        }
    }
}
