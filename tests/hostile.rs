//! Hostile repositories (issue 27): whatever a repository holds, every
//! command exits 0, 1 or 2, within seconds, without a panic.
//!
//! The binary under test is the one `cargo test` builds, or the one
//! `MESHPLAN_BIN` names: `scripts/test.sh` also runs this file against the
//! `dist` profile's binary, the one meshplan ships, whose panic strategy
//! is its own (see `[profile.dist]` in Cargo.toml).

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Longest any command may take on these inputs, in a debug build on a
/// loaded CI machine; each finishes in well under a second in `dist`.
const DEADLINE: Duration = Duration::from_secs(60);

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// The binary under test: `MESHPLAN_BIN`, or the one cargo built.
fn bin() -> String {
    std::env::var("MESHPLAN_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_meshplan").into())
}

/// Runs meshplan with `args`, killed at [`DEADLINE`].
fn run(args: &[&str]) -> Run {
    let mut child = Command::new(bin())
        .args(args)
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let readers = (
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = out.read_to_string(&mut s);
            s
        }),
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        }),
    );
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            panic!("meshplan {args:?} still ran after {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run {
        code: status.code(),
        stdout: readers.0.join().unwrap(),
        stderr: readers.1.join().unwrap(),
    }
}

/// A repository of `meshplan.yaml` (Istio) and `files`.
fn repo(files: &[(&str, String)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let config = "apiVersion: meshplan.dev/v1alpha1\nkind: MeshplanConfig\ntargets: [istio]\n\
                  defaultNamespace: shop\n";
    std::fs::write(dir.path().join("meshplan.yaml"), config).unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    for (name, text) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    dir
}

/// `check` and `render` of `dir` fail with `code` and `wanted` in the
/// output: a diagnostic, not a crash.
fn refused(dir: &Path, wanted: &str) {
    let repo = dir.to_str().unwrap();
    for cmd in ["check", "render"] {
        let r = run(&[cmd, repo]);
        let all = format!("{}{}", r.stdout, r.stderr);
        assert_eq!(r.code, Some(1), "meshplan {cmd}: {all}");
        assert!(all.contains(wanted), "meshplan {cmd}: {all}");
        assert!(!all.contains("panicked"), "meshplan {cmd}: {all}");
        assert!(!all.contains("compiler bug"), "meshplan {cmd}: {all}");
    }
}

const INTENT: &str = "apiVersion: meshplan.dev/v1alpha1\nkind: ServiceIntent\nmetadata:\n  \
                      name: web\nspec:\n  ports: [{ name: http, port: 80, protocol: http }]\n";

/// Inputs the YAML parser panics on, and nesting that would overflow the
/// stack: each a syntax error at a position.
#[test]
fn yaml_that_crashed_the_reader_is_a_syntax_error() {
    let deep_in_intent = format!(
        "{INTENT}  labels: {}1{}\n",
        "{a: ".repeat(10_000),
        "}".repeat(10_000)
    );
    let block: String = (0..1_000)
        .map(|i| format!("{}k:\n", " ".repeat(i)))
        .collect();
    let cases: Vec<(&str, String)> = vec![
        ("backslash", "\"\\".into()),
        ("quoted backslash", "\"a\\".into()),
        ("tag in flow map", "{!,".into()),
        ("tag in flow seq", "[!,".into()),
        ("named tag in flow map", "{!a,".into()),
        ("brackets", "[".repeat(10_000)),
        ("nested maps in an intent", deep_in_intent),
        ("nested blocks", block),
    ];
    for (what, text) in cases {
        let dir = repo(&[("web.yaml", text)]);
        let r = run(&["check", dir.path().to_str().unwrap()]);
        let all = format!("{}{}", r.stdout, r.stderr);
        assert_eq!(r.code, Some(1), "{what}: {all}");
        assert!(all.contains("error[MP1001]"), "{what}: {all}");
        assert!(all.contains("web.yaml:"), "{what}: {all}");
        assert!(!all.contains("panicked"), "{what}: {all}");
    }
}

/// A valid file with a mapping of 128,000 keys: read in linear time.
#[test]
fn a_mapping_of_many_keys_is_read_in_linear_time() {
    let labels: String = (0..128_000)
        .map(|i| format!("          k{i}: v\n"))
        .collect();
    let text = format!("{INTENT}  versions:\n    - name: v1\n      labels:\n{labels}");
    let dir = repo(&[("web.yaml", text)]);
    let r = run(&["check", dir.path().to_str().unwrap()]);
    // Whatever the verdict on so many labels, it comes in time.
    assert!(matches!(r.code, Some(0 | 1)), "{}{}", r.stdout, r.stderr);
}

/// Rules that would build gigabytes, loop 10¹² times or overflow the
/// stack are refused with MP3006 before they run.
#[test]
fn cel_rules_over_budget_are_refused_before_they_run() {
    let rules = [
        format!(
            "intent.metadata.name{} != ''",
            ".replace('w', 'wwwwwwwwww')".repeat(11)
        ),
        "lists.range(1000000).all(a, lists.range(1000000).all(b, a + b >= 0))".into(),
        "lists.range(1000000).map(l, string(l) + string(l) + string(l)).size() > 0".into(),
        // Nesting that overflowed the parser's stack.
        format!("{}true{}", "(".repeat(1_000), ")".repeat(1_000)),
        format!("intent{} == 1", ".a".repeat(1_000)),
    ];
    for rule in rules {
        let policy = format!(
            "apiVersion: meshplan.dev/v1alpha1\nkind: Policy\nmetadata:\n  name: org\nspec:\n  \
             rules:\n    - name: hostile\n      rule: \"{rule}\"\n      message: no\n"
        );
        let dir = repo(&[("web.yaml", INTENT.into()), ("policies/org.yaml", policy)]);
        refused(dir.path(), "MP3006");
    }
}

/// Output that cannot be written (a full disk) is an error, exit 2; a
/// command never reports success over output that was lost.
#[test]
fn a_full_disk_is_an_error_not_a_success() {
    let commands: [&[&str]; 6] = [
        &["check", "examples-repo", "--format", "json"],
        &["check", "examples-repo", "--format", "sarif"],
        &["render", "examples-repo", "--format", "json"],
        &["render", "examples-repo"],
        &["schema"],
        &["rules", "examples-repo"],
    ];
    for args in commands {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let out = Command::new(bin())
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdout(full)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains("No space left on device"),
            "{args:?}: {stderr}"
        );
    }
}

/// A file that cannot be read is an I/O error (exit 2), at 1:1 (SARIF
/// lines start at 1: code scanning refuses a line 0).
#[test]
fn an_unreadable_file_is_an_io_error_at_its_first_line() {
    let dir = repo(&[("web.yaml", String::new())]);
    std::fs::write(dir.path().join("web.yaml"), b"kind: \xff\xfe\n").unwrap();
    let repo = dir.path().to_str().unwrap();
    let r = run(&["check", repo]);
    assert_eq!(r.code, Some(2), "{}", r.stdout);
    assert!(r.stdout.contains("web.yaml:1:1"), "{}", r.stdout);
    let r = run(&["check", repo, "--format", "sarif"]);
    assert_eq!(r.code, Some(2));
    let sarif: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let region = &sarif["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["region"];
    assert_eq!(region["startLine"], 1, "{region}");
    assert_eq!(region["startColumn"], 1, "{region}");
    assert_eq!(run(&["render", repo]).code, Some(2));
}

/// Without a meshplan.yaml naming targets, `render` and `diff` have
/// nothing to compile for: a usage error.
#[test]
fn rendering_without_targets_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("web.yaml"), INTENT).unwrap();
    let repo = dir.path().to_str().unwrap();
    for args in [vec!["render", repo], vec!["diff", repo, "--against", repo]] {
        let r = run(&args);
        assert_eq!(r.code, Some(2), "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains("--mesh"), "{}", r.stderr);
    }
}

/// Names meshplan derives from two intents (`a` + port `b-c`, `a-b` +
/// port `c`: Linkerd's Server `a-b-c`) collide: check says so (MP2001),
/// instead of passing while render calls it a compiler bug.
#[test]
fn derived_names_that_collide_fail_check() {
    let intent = |name: &str, port: &str| {
        format!(
            "apiVersion: meshplan.dev/v1alpha1\nkind: ServiceIntent\nmetadata: {{ name: {name} }}\n\
             spec:\n  ports: [{{ name: {port}, port: 80, protocol: http }}]\n  \
             versions: [{{ name: v1, labels: {{ app: {name}, version: v1 }} }}]\n"
        )
    };
    let dir = repo(&[
        ("a.yaml", intent("a", "b-c")),
        ("ab.yaml", intent("a-b", "c")),
    ]);
    let config = "apiVersion: meshplan.dev/v1alpha1\nkind: MeshplanConfig\ntargets: [linkerd]\n\
                  defaultNamespace: shop\n";
    std::fs::write(dir.path().join("meshplan.yaml"), config).unwrap();
    refused(
        dir.path(),
        "error[MP2001]: linkerd: Server shop/a-b-c is made for both",
    );
}

/// `render --out DIR` writes inside DIR only: a link there is replaced,
/// not written through; a linked namespace folder is refused; files of
/// objects that are gone are removed when meshplan wrote them, and kept
/// (and listed) when it did not.
#[test]
fn render_out_stays_inside_its_folder_and_removes_what_is_stale() {
    let tmp = tempfile::tempdir().unwrap();
    let (out, victim) = (tmp.path().join("out"), tmp.path().join("victim"));
    std::fs::create_dir_all(out.join("bookinfo")).unwrap();
    std::fs::create_dir_all(&victim).unwrap();
    std::fs::write(victim.join("kustomization.yaml"), "precious\n").unwrap();
    let target = "networking.istio.io.virtualservice-reviews.yaml";
    std::os::unix::fs::symlink(
        victim.join("kustomization.yaml"),
        out.join("bookinfo").join(target),
    )
    .unwrap();
    // A stale object file meshplan wrote, and a file of someone else's.
    let stale = out.join("bookinfo/networking.istio.io.virtualservice-gone.yaml");
    std::fs::write(
        &stale,
        "metadata:\n  labels:\n    app.kubernetes.io/managed-by: meshplan\n",
    )
    .unwrap();
    std::fs::create_dir_all(out.join("olds")).unwrap();
    let stale_elsewhere = out.join("olds/core.service-gone.yaml");
    std::fs::copy(&stale, &stale_elsewhere).unwrap();
    std::fs::write(out.join("bookinfo/notes.txt"), "mine\n").unwrap();
    let args = [
        "render",
        "examples-repo",
        "--mesh",
        "istio",
        "--out",
        out.to_str().unwrap(),
    ];
    let r = run_in_repo(&args);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(
        std::fs::read_to_string(victim.join("kustomization.yaml")).unwrap(),
        "precious\n"
    );
    let written = out.join("bookinfo").join(target);
    assert!(!written.symlink_metadata().unwrap().file_type().is_symlink());
    assert!(std::fs::read_to_string(&written)
        .unwrap()
        .contains("kind: VirtualService"));
    assert!(!stale.exists() && !stale_elsewhere.exists(), "{}", r.stderr);
    assert!(out.join("bookinfo/notes.txt").exists());
    assert!(r.stderr.contains("removed 2 stale files"), "{}", r.stderr);
    assert!(r.stderr.contains("notes.txt"), "{}", r.stderr);

    // A namespace folder that is a link: refused, its target untouched.
    std::fs::remove_dir_all(out.join("bookinfo")).unwrap();
    std::os::unix::fs::symlink(&victim, out.join("bookinfo")).unwrap();
    let r = run_in_repo(&args);
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(r.stderr.contains("symbolic link"), "{}", r.stderr);
    let in_victim: Vec<_> = std::fs::read_dir(&victim).unwrap().collect();
    assert_eq!(in_victim.len(), 1);
}

/// [`run`] from the workspace root (for `examples-repo`).
fn run_in_repo(args: &[&str]) -> Run {
    let root = env!("CARGO_MANIFEST_DIR");
    let args: Vec<String> = args
        .iter()
        .map(|a| {
            if *a == "examples-repo" {
                format!("{root}/examples-repo")
            } else {
                (*a).to_owned()
            }
        })
        .collect();
    run(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// Credentials in a Git URL never reach the output.
#[test]
fn git_credentials_are_never_printed() {
    for url in [
        "ssh://u:hunter2@git.example.com/r.git",
        "u:hunter2@git.example.com:org/r.git",
    ] {
        let r = run(&["run", "--git", url]);
        assert_eq!(r.code, Some(2), "{}", r.stderr);
        assert!(r.stderr.contains("git.example.com"), "{}", r.stderr);
        assert!(!r.stderr.contains("hunter2"), "{}", r.stderr);
    }
}

/// `diff --against` a folder compares meshplan's objects only: a Secret
/// beside them (labelled as meshplan's or not) is neither planned as a
/// prune nor printed, in any format; links are not followed.
#[test]
fn diff_against_never_prints_what_meshplan_did_not_render() {
    let tmp = tempfile::tempdir().unwrap();
    let against = tmp.path().join("rendered");
    std::fs::create_dir_all(against.join("bookinfo")).unwrap();
    let secret = |labels: &str| {
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  namespace: bookinfo\n{labels}\
             data:\n  password: aHVudGVyMg==\nstringData:\n  token: hunter2\n"
        )
    };
    std::fs::write(against.join("bookinfo/secret.yaml"), secret("")).unwrap();
    let labelled = secret("  labels:\n    app.kubernetes.io/managed-by: meshplan\n");
    std::fs::write(against.join("bookinfo/labelled.yaml"), labelled).unwrap();
    let outside = tmp.path().join("outside.yaml");
    std::fs::write(
        &outside,
        secret("  labels:\n    app.kubernetes.io/managed-by: meshplan\n"),
    )
    .unwrap();
    std::os::unix::fs::symlink(&outside, against.join("bookinfo/link.yaml")).unwrap();
    std::os::unix::fs::symlink(&against, against.join("bookinfo/loop")).unwrap();
    for format in ["text", "markdown", "json"] {
        let args = [
            "diff",
            "examples-repo",
            "--against",
            against.to_str().unwrap(),
            "--format",
            format,
        ];
        let r = run_in_repo(&args);
        assert_eq!(r.code, Some(0), "{format}: {}", r.stderr);
        let all = format!("{}{}", r.stdout, r.stderr);
        for leaked in ["aHVudGVyMg==", "hunter2", "Secret bookinfo/db"] {
            assert!(!all.contains(leaked), "{format}: {leaked} in {all}");
        }
    }
}

/// What a repository computes or names (a rule's message, a file name)
/// reaches the terminal with its control characters escaped: it can
/// neither drive the terminal nor forge a diagnostic line in a CI log.
#[test]
fn repository_text_cannot_drive_the_terminal() {
    let policy =
        "apiVersion: meshplan.dev/v1alpha1\nkind: Policy\nmetadata:\n  name: org\nspec:\n  \
                  rules:\n    - name: loud\n      rule: 'false'\n      messageExpression: \
                  '''\\u001b[2J\\u001b[31mforged\\nerror[MP9999]: forged --> x.yaml:1:1'''\n";
    let broken = format!("{}\n  bad: [", INTENT.trim_end());
    let dir = repo(&[
        ("web.yaml", INTENT.into()),
        ("policies/org.yaml", policy.into()),
        ("evil\u{1b}[31m\nerror[MP9999].yaml", broken),
    ]);
    let r = run(&["check", dir.path().to_str().unwrap()]);
    assert_eq!(r.code, Some(1), "{}", r.stdout);
    assert!(!r.stdout.contains('\u{1b}'), "{:?}", r.stdout);
    assert!(
        !r.stdout.lines().any(|l| l.starts_with("error[MP9999]")),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("forged"), "{}", r.stdout);
    assert!(r.stdout.contains("\\u{1b}"), "{}", r.stdout);
}

/// What a repository leaves out or links must not silently drop its
/// configuration or its rules, and what it states must be what the
/// cluster accepts.
#[test]
fn nothing_is_dropped_silently() {
    // meshplan.yaml as a link: not followed, and said.
    let dir = repo(&[("web.yaml", INTENT.into())]);
    let real = dir.path().join("real-config.txt");
    std::fs::rename(dir.path().join("meshplan.yaml"), &real).unwrap();
    std::os::unix::fs::symlink(&real, dir.path().join("meshplan.yaml")).unwrap();
    let r = run(&["check", dir.path().to_str().unwrap()]);
    assert_eq!(r.code, Some(2), "{}", r.stdout);
    assert!(
        r.stdout.contains("`meshplan.yaml` is a symbolic link"),
        "{}",
        r.stdout
    );

    // The policies folder meshplan.yaml names, deleted or ignored.
    let policy =
        "apiVersion: meshplan.dev/v1alpha1\nkind: Policy\nmetadata:\n  name: org\nspec:\n  \
                  rules:\n    - name: never\n      rule: 'false'\n      message: no\n";
    let dir = repo(&[
        ("web.yaml", INTENT.into()),
        ("policies/org.yaml", policy.into()),
    ]);
    let config = "apiVersion: meshplan.dev/v1alpha1\nkind: MeshplanConfig\ntargets: [istio]\n\
                  policies: [policies]\n";
    std::fs::write(dir.path().join("meshplan.yaml"), config).unwrap();
    let r = run(&["check", dir.path().to_str().unwrap()]);
    assert!(
        r.stdout.contains("error[org/never]"),
        "the rule applies: {}",
        r.stdout
    );
    std::fs::write(dir.path().join(".meshplanignore"), "policies/\n").unwrap();
    let r = run(&["check", dir.path().to_str().unwrap()]);
    assert_eq!(r.code, Some(1), "{}", r.stdout);
    assert!(
        r.stdout
            .contains("no Policy document was read from `policies`"),
        "{}",
        r.stdout
    );

    // A tag that makes a number a string; names the cluster refuses.
    let tagged = INTENT.replace("port: 80", "port: !!str 80");
    let config = "apiVersion: meshplan.dev/v1alpha1\nkind: MeshplanConfig\ntargets: [istio]\n\
                  istio: { revision: 1.24_x }\nclusters: [{ name: Prod EU, namespaces: [Shop] }]\n";
    let dir = repo(&[("web.yaml", tagged)]);
    std::fs::write(dir.path().join("meshplan.yaml"), config).unwrap();
    let r = run(&["check", dir.path().to_str().unwrap()]);
    assert_eq!(r.code, Some(1), "{}", r.stdout);
    for wanted in [
        "tags are not supported",
        "Istio revision `1.24_x`",
        "cluster `Prod EU`",
        "namespace `Shop`",
    ] {
        assert!(r.stdout.contains(wanted), "{wanted}: {}", r.stdout);
    }
}

/// A number that is not one (`.nan`, `.inf`) is MP1006 at the value, and
/// nothing else: the built-in range rule used to fail to evaluate on it
/// (MP3004 "no matching overload"), twice per intent.
#[test]
fn an_objective_that_is_not_a_number_is_one_error_at_the_value() {
    for value in [".nan", ".inf", "-.inf"] {
        let intent = format!(
            "{INTENT}  slos:\n    - name: availability\n      objective: {value}\n      \
             sli: {{ availability: {{}} }}\n"
        );
        let dir = repo(&[("web.yaml", intent)]);
        let r = run(&["check", "--format", "json", dir.path().to_str().unwrap()]);
        assert_eq!(r.code, Some(1), "{value}: {}", r.stdout);
        let found: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        let codes: Vec<&str> = found["diagnostics"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|d| d["code"].as_str())
            .collect();
        assert_eq!(codes, ["MP1006"], "{value}: {}", r.stdout);
    }
}

/// Sizes that used to grow without bound: an ignore file of megabytes,
/// a scalar of megabytes quoted in a diagnostic.
#[test]
fn input_size_does_not_become_output_or_memory_size() {
    let dir = repo(&[("web.yaml", INTENT.into())]);
    let patterns: String = (0..400_000).map(|i| format!("file-{i}.yaml\n")).collect();
    std::fs::write(dir.path().join(".meshplanignore"), patterns).unwrap();
    let r = run(&["check", dir.path().to_str().unwrap()]);
    assert_eq!(r.code, Some(2), "{}", r.stdout);
    assert!(
        r.stdout.contains("over the limit of 65536 bytes"),
        "{}",
        r.stdout
    );

    let long = "x".repeat(10 << 20);
    let dir = repo(&[("web.yaml", format!("{INTENT}  {long}: 1\n"))]);
    let r = run(&["check", dir.path().to_str().unwrap()]);
    assert_eq!(r.code, Some(1));
    assert!(
        r.stdout.len() < 20_000,
        "{} bytes of output",
        r.stdout.len()
    );
}

/// 20,000 routes: shadowing is checked in linear time for distinct paths
/// (and within a budget when they share one), and a thousand findings in
/// one document do not each read the document again.
#[test]
fn many_routes_are_checked_in_time() {
    let route = |i: usize, m: &str| {
        format!("    - name: r{i}\n      match: [{m}]\n      destination: {{ version: v1 }}\n")
    };
    let head = format!(
        "{INTENT}  versions: [{{ name: v1, labels: {{ app: web, version: v1 }} }}]\n  routes:\n"
    );
    let distinct: String = (0..20_000)
        .map(|i| route(i, &format!("{{ path: {{ prefix: /p{i} }} }}")))
        .collect();
    let behind_catch_all =
        format!("    - name: all\n      destination: {{ version: v1 }}\n{distinct}");
    let same_path: String = (0..20_000)
        .map(|i| {
            route(
                i,
                &format!("{{ path: {{ prefix: /a }}, headers: {{ x-id: {{ exact: \"{i}\" }} }} }}"),
            )
        })
        .collect();
    for (what, routes, warnings) in [
        ("distinct", distinct, "0 warnings"),
        ("behind a catch-all", behind_catch_all, "20000 warnings"),
        ("one path", same_path, "1 warning"),
    ] {
        let dir = repo(&[("web.yaml", format!("{head}{routes}"))]);
        let r = run(&["check", dir.path().to_str().unwrap()]);
        assert_eq!(r.code, Some(0), "{what}: {}", r.stderr);
        assert!(
            r.stdout.trim_end().ends_with(warnings),
            "{what}: {}",
            &r.stdout[r.stdout.len().saturating_sub(300)..]
        );
    }
}

/// `rules` lists the rules check runs: one that does not compile is said,
/// and the command fails, instead of a shorter list and success.
#[test]
fn rules_says_which_rules_do_not_compile() {
    let policy = "apiVersion: meshplan.dev/v1alpha1\nkind: Policy\nmetadata:\n  name: org\nspec:\n  \
                  rules:\n    - name: broken\n      rule: 'intent.spec.ports.exists(p, '\n      message: no\n";
    let dir = repo(&[("policies/org.yaml", policy.into())]);
    let r = run(&["rules", dir.path().to_str().unwrap()]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(r.stderr.contains("error[MP3001]"), "{}", r.stderr);
    assert!(r.stderr.contains("1 rule(s) left out"), "{}", r.stderr);
}
