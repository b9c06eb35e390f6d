//! `meshplan schema`.

use std::process::ExitCode;

use meshplan_policy_lang::intent::Kind;
use meshplan_policy_lang::schema::schema;

use super::output::print;
use super::{SchemaArgs, SchemaKind};

pub fn run(args: &SchemaArgs) -> anyhow::Result<ExitCode> {
    let kind = args.kind.map(|k| match k {
        SchemaKind::ServiceIntent => Kind::ServiceIntent,
        SchemaKind::Policy => Kind::Policy,
        SchemaKind::MeshplanConfig => Kind::MeshplanConfig,
    });
    let mut text = serde_json::to_string_pretty(&schema(kind))?;
    text.push('\n');
    print(&text)?;
    Ok(ExitCode::SUCCESS)
}
