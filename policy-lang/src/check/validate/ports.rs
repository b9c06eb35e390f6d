//! Ports: named, numbered in range, each name and number once.

use super::Doc;
use crate::diagnostic::Code;
use crate::intent::{Port, ServiceIntent};

pub(super) fn ports(d: &mut Doc<'_, ServiceIntent>, ports: &[Port]) {
    if ports.is_empty() {
        d.error_key(
            Code::MissingField,
            "spec.ports",
            "a service needs at least one port",
        );
    }
    for (i, p) in ports.iter().enumerate() {
        d.name(format_args!("spec.ports[{i}].name"), "port name", &p.name);
        for (field, v) in [("port", Some(p.port)), ("targetPort", p.target_port)] {
            if let Some(v) = v {
                if !(1..=65535).contains(&v) {
                    d.error(
                        Code::OutOfRange,
                        format_args!("spec.ports[{i}].{field}"),
                        format!("port {v} is out of range: ports are 1 to 65535"),
                    );
                }
            }
        }
    }
    d.unique("port", "spec.ports", "name", ports, |p| p.name.as_str());
    d.unique("port number", "spec.ports", "port", ports, |p| p.port);
}
