//! SLOs: names, objectives, one SLI each, windows long enough to burn.

use super::{exactly_one, Doc};
use crate::diagnostic::Code;
use crate::intent::{ServiceIntent, Slo};

pub(super) fn slos(d: &mut Doc<'_, ServiceIntent>, slos: &[Slo]) {
    d.unique("SLO", "spec.slos", "name", slos, |s| s.name.as_str());
    for (i, slo) in slos.iter().enumerate() {
        d.name(format_args!("spec.slos[{i}].name"), "SLO name", &slo.name);
        if !slo.objective.is_finite() {
            d.error(
                Code::InvalidValue,
                format_args!("spec.slos[{i}].objective"),
                format!(
                    "objective `{}` is not a number: write a percentage such as 99.9",
                    slo.objective
                ),
            );
        }
        let sli = &slo.sli;
        if !exactly_one(&[
            sli.availability.is_some(),
            sli.latency.is_some(),
            sli.custom.is_some(),
        ]) {
            d.error(
                Code::Conflict,
                format_args!("spec.slos[{i}].sli"),
                "an SLI is exactly one of `availability`, `latency`, `custom`",
            );
        }
        if let Some(w) = slo.window {
            if w.as_millis() < 3_600_000 {
                d.error(Code::OutOfRange, format_args!("spec.slos[{i}].window"), format!("window {w} is shorter than 1h: burn-rate alerts need a window of hours or days"));
            }
        }
    }
}
