//! The helper the environment scripts run (`scripts/env/up.sh`): the
//! metrics generator, the smart-HTTP Git server, and the few apiserver
//! chores a shell script cannot do well (installing CRDs, applying the RBAC
//! manifests, requesting a ServiceAccount token).

use std::io::Cursor;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use clap::{Parser, Subcommand};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, PostParams};
use meshplan_testenv::metrics::{Generator, Workload};
use meshplan_testenv::{client_from, crds, error_chain, githttp};

#[derive(Debug, Parser)]
#[command(
    name = "meshplan-testenv",
    about = "Helpers of meshplan's test environment"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Serve simulated Istio and Linkerd metrics: GET /metrics; PUT
    /// /workloads with a JSON array of workloads; POST /quiesce.
    MetricsGen {
        #[arg(long)]
        listen: String,
    },
    /// Serve the bare repositories under ROOT over smart HTTP with auth.
    GitHttp {
        #[arg(long)]
        listen: String,
        #[arg(long)]
        root: PathBuf,
        #[arg(long)]
        user: String,
        #[arg(long)]
        password_file: PathBuf,
        #[arg(long)]
        token_file: PathBuf,
    },
    /// Install every CRD of DIR (stripped for kube-apiserver 1.20).
    InstallCrds {
        #[arg(long)]
        kubeconfig: PathBuf,
        dir: PathBuf,
    },
    /// Server-side apply every document of FILES.
    Apply {
        #[arg(long)]
        kubeconfig: PathBuf,
        files: Vec<PathBuf>,
    },
    /// Print a token for a ServiceAccount (TokenRequest API).
    SaToken {
        #[arg(long)]
        kubeconfig: PathBuf,
        #[arg(long)]
        namespace: String,
        #[arg(long)]
        name: String,
        #[arg(long, default_value_t = 86_400)]
        seconds: i64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::MetricsGen { listen } => metrics_gen(&listen),
        Cmd::GitHttp {
            listen,
            root,
            user,
            password_file,
            token_file,
        } => {
            let read = |p: &PathBuf| std::fs::read_to_string(p).map(|s| s.trim().to_owned());
            match (read(&password_file), read(&token_file)) {
                (Ok(password), Ok(token)) => githttp::serve(
                    &listen,
                    root,
                    githttp::Credentials {
                        user,
                        password,
                        token,
                    },
                )
                .map_err(|e| e.to_string()),
                (Err(e), _) | (_, Err(e)) => Err(format!("cannot read credentials: {e}")),
            }
        }
        Cmd::InstallCrds { kubeconfig, dir } => block_on(async move {
            let client = client_from(&kubeconfig).await?;
            let names = crds::install_crds(&client, &dir).await?;
            eprintln!("installed {} CRDs from {}", names.len(), dir.display());
            Ok(())
        }),
        Cmd::Apply { kubeconfig, files } => block_on(async move {
            let client = client_from(&kubeconfig).await?;
            for f in &files {
                let n = crds::apply_file(&client, f).await?;
                eprintln!("applied {n} objects from {}", f.display());
            }
            Ok(())
        }),
        Cmd::SaToken {
            kubeconfig,
            namespace,
            name,
            seconds,
        } => block_on(async move {
            let client = client_from(&kubeconfig).await?;
            let api: Api<ServiceAccount> = Api::namespaced(client, &namespace);
            let req = TokenRequest {
                spec: TokenRequestSpec {
                    expiration_seconds: Some(seconds),
                    ..Default::default()
                },
                ..Default::default()
            };
            let tr = api
                .create_token_request(&name, &PostParams::default(), &req)
                .await
                .map_err(|e| {
                    meshplan_testenv::Error::Kube(format!("token for {namespace}/{name}"), e)
                })?;
            let token = tr.status.map(|s| s.token).unwrap_or_default();
            println!("{token}");
            Ok(())
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("meshplan-testenv: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn block_on<F>(f: F) -> Result<(), String>
where
    F: std::future::Future<Output = Result<(), meshplan_testenv::Error>>,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(f).map_err(|e| error_chain(&e))
}

fn metrics_gen(listen: &str) -> Result<(), String> {
    let server = tiny_http::Server::http(listen).map_err(|e| e.to_string())?;
    let state = Arc::new(Mutex::new(Generator::new(Instant::now())));
    eprintln!("metrics-gen: serving on http://{listen}");
    for mut req in server.incoming_requests() {
        let (code, body) = {
            let mut g = state.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            match (req.method().as_str(), req.url()) {
                ("GET", "/metrics") => (200, g.exposition(now)),
                ("GET", "/healthz") => (200, "ok\n".to_owned()),
                ("POST", "/quiesce") => {
                    g.quiesce(now);
                    (200, "ok\n".to_owned())
                }
                ("PUT", "/workloads") => {
                    let mut text = String::new();
                    let parsed = req
                        .as_reader()
                        .read_to_string(&mut text)
                        .map_err(|e| e.to_string())
                        .and_then(|_| {
                            serde_json::from_str::<Vec<Workload>>(&text).map_err(|e| e.to_string())
                        })
                        .and_then(|ws| {
                            ws.iter()
                                .try_for_each(Workload::validate)
                                .map(|()| ws)
                                .map_err(|e| e.to_string())
                        });
                    match parsed {
                        Ok(ws) => {
                            eprintln!("metrics-gen: set {} workloads", ws.len());
                            g.set(now, ws);
                            (200, "ok\n".to_owned())
                        }
                        Err(e) => (400, format!("{e}\n")),
                    }
                }
                _ => (404, "not found\n".to_owned()),
            }
        };
        let len = body.len();
        let resp = tiny_http::Response::new(
            tiny_http::StatusCode(code),
            vec![
                tiny_http::Header::from_bytes("Content-Type", "text/plain; version=0.0.4")
                    .expect("static header"),
            ],
            Cursor::new(body.into_bytes()),
            Some(len),
            None,
        );
        let _ = req.respond(resp);
    }
    Ok(())
}
