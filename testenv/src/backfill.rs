//! History for the test Prometheus: series written as OpenMetrics, made
//! into TSDB blocks by `promtool tsdb create-blocks-from openmetrics` (as
//! an operator backfills) and moved into the data directory of the plain
//! Prometheus, which loads new blocks at its next block reload (about a
//! minute). Prometheus 2.39+ accepts blocks that overlap others.

use std::path::Path;
use std::process::Command;

use crate::{Error, Prometheus, Sample, TestEnv};

impl TestEnv {
    /// Backfills `openmetrics` (samples with timestamps in seconds, ending
    /// with `# EOF`) into the plain Prometheus. Returns once promtool made
    /// the blocks and they are in place; [`Prometheus::query_at`] tells
    /// when Prometheus has loaded them.
    pub fn backfill(&self, openmetrics: &str) -> Result<(), Error> {
        let data = self.dir.join("prometheus/data");
        // On the data directory's file system, so that blocks move by
        // renaming.
        let work = tempfile::tempdir_in(&self.dir).map_err(|e| Error::Io(self.dir.clone(), e))?;
        let input = work.path().join("history.om");
        std::fs::write(&input, openmetrics).map_err(|e| Error::Io(input.clone(), e))?;
        let blocks = work.path().join("blocks");
        let tool = std::env::var("MESHPLAN_PROMTOOL").unwrap_or_else(|_| "promtool".into());
        let out = Command::new(&tool)
            .args(["tsdb", "create-blocks-from", "openmetrics"])
            .arg(&input)
            .arg(&blocks)
            .output()
            .map_err(|e| Error::Io(tool.clone().into(), e))?;
        if !out.status.success() {
            return Err(Error::Command(
                format!("{tool} tsdb create-blocks-from openmetrics"),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            ));
        }
        move_blocks(&blocks, &data)
    }
}

fn move_blocks(from: &Path, to: &Path) -> Result<(), Error> {
    let entries = std::fs::read_dir(from).map_err(|e| Error::Io(from.to_owned(), e))?;
    for e in entries {
        let e = e.map_err(|e| Error::Io(from.to_owned(), e))?;
        let target = to.join(e.file_name());
        std::fs::rename(e.path(), &target).map_err(|err| Error::Io(target, err))?;
    }
    Ok(())
}

impl Prometheus {
    /// An instant query at `time` (unix seconds).
    pub fn query_at(&self, promql: &str, time: u64) -> Result<Vec<Sample>, Error> {
        let url = format!("{}/api/v1/query", self.url);
        let body = ureq::get(&url)
            .query("query", promql)
            .query("time", time.to_string())
            .call()
            .and_then(|mut r| r.body_mut().read_to_string())
            .map_err(|e| Error::Http(format!("GET {url}?query={promql}"), Box::new(e)))?;
        crate::parse_vector(&url, &body)
    }
}
