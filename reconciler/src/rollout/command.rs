//! Manual commands (`meshplan rollout promote|abort|pause|resume|
//! skip-analysis`). The CLI does not move a rollout itself: it leaves a
//! [`Command`] in the stored state (compare-and-swap), and the controller —
//! the only writer of transitions — applies it on its next tick and
//! records a [`CommandResult`] the CLI waits for.

use serde::{Deserialize, Serialize};

use super::Event;

/// What a user asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CommandKind {
    /// Passes a manual gate.
    Promote,
    /// Promotes now, from any active phase.
    PromoteForce,
    Abort,
    Pause,
    Resume,
    SkipAnalysis,
}

impl CommandKind {
    pub fn event(self) -> Event {
        match self {
            CommandKind::Promote => Event::Promote { force: false },
            CommandKind::PromoteForce => Event::Promote { force: true },
            CommandKind::Abort => Event::Abort,
            CommandKind::Pause => Event::Pause,
            CommandKind::Resume => Event::Resume,
            CommandKind::SkipAnalysis => Event::SkipAnalysis,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            CommandKind::Promote => "promote",
            CommandKind::PromoteForce => "promote --force",
            CommandKind::Abort => "abort",
            CommandKind::Pause => "pause",
            CommandKind::Resume => "resume",
            CommandKind::SkipAnalysis => "skip-analysis",
        }
    }
}

/// A command waiting for the controller.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Command {
    /// Unique per request: the CLI waits for the result with this id.
    pub id: String,
    pub kind: CommandKind,
    /// Unix seconds.
    pub requested: u64,
}

/// What became of a command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommandResult {
    pub id: String,
    pub kind: CommandKind,
    pub accepted: bool,
    /// The transition it made, or why it was refused.
    pub message: String,
    pub time: u64,
}
