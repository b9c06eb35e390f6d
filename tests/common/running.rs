//! `meshplan run` as a child process, for the live tests.
#![allow(dead_code)] // not every test file uses every helper

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use meshplan_testenv::TestEnv;

/// A running `meshplan run`, stopped (SIGTERM) when dropped.
pub struct Running {
    child: Child,
    port: u16,
    stderr: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Running {
    pub fn start(args: &[&str], inventory: &str) -> Running {
        Self::start_with_tmp(args, inventory, None)
    }

    /// With `tmp` as the temp dir and no `--checkout`: a Git checkout goes
    /// where meshplan places it by default.
    pub fn start_with_tmp(
        args: &[&str],
        inventory: &str,
        tmp: Option<&std::path::Path>,
    ) -> Running {
        let env = TestEnv::get();
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let stderr = dir.path().join("stderr.log");
        let listen = format!("127.0.0.1:{port}");
        let mut all: Vec<&str> = vec!["run"];
        all.extend(args);
        all.extend([
            "--kubeconfig",
            env.sa_kubeconfig.to_str().unwrap(),
            "--inventory",
            inventory,
            "--listen",
            &listen,
        ]);
        let checkout = dir.path().join("checkout");
        let has_git = args.contains(&"--git");
        if has_git && tmp.is_none() {
            all.extend(["--checkout", checkout.to_str().unwrap()]);
        }
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_meshplan"));
        if let Some(tmp) = tmp {
            cmd.env("TMPDIR", tmp);
        }
        let child = cmd
            .args(&all)
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        Running {
            child,
            port,
            stderr,
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// GET; `None` while the server is not up.
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        let resp = ureq::get(&self.url(path))
            .config()
            .http_status_as_error(false)
            .build()
            .call()
            .ok()?;
        let status = resp.status().as_u16();
        Some((
            status,
            resp.into_body().read_to_string().unwrap_or_default(),
        ))
    }

    pub fn metric(&self, name: &str) -> Option<f64> {
        let (_, body) = self.get("/metrics")?;
        body.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    }

    /// SIGTERM, then the exit code.
    pub fn stop(mut self) -> Option<i32> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                return s.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        None
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
