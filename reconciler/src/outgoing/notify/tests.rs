//! Each sink's request as its API documents it, deduplication, the rate
//! limit, and mistakes in the file.

use super::*;

fn notifier(yaml: &str) -> Result<Notifier, String> {
    let file: File = serde_saphyr::from_str(yaml).map_err(|e| e.to_string())?;
    Notifier::new(file, Arc::new(Http::default())).map_err(|e| e.to_string())
}

fn notice(topic: Topic, state: State, message: &str) -> Notice {
    Notice {
        topic,
        subject: "shop/cart".into(),
        state,
        message: message.into(),
        revision: Some("0123456789abcdef0123456789abcdef01234567".into()),
    }
}

fn request(n: &Notifier, sink: usize, notice: &Notice) -> Result<(String, Value), String> {
    n.sinks[sink].request(notice).map_err(|e| e.to_string())
}

/// Admits `notice` to sink 0 and, when admitted, takes it as delivered.
fn admit(n: &Notifier, notice: &Notice) -> Option<u32> {
    let got = n.admit(0, &n.sinks[0], notice);
    if got.is_some() {
        n.delivered(0, &n.sinks[0], notice);
    }
    got
}

#[test]
fn chat_sinks_send_their_apis_payloads() {
    let n = notifier("sinks:\n  - { name: s, type: slack, url: 'https://hooks.slack.com/services/T/B/X' }\n  - { name: t, type: teams, url: 'https://t.example/w' }\n  - { name: d, type: discord, url: 'https://discord.com/api/webhooks/1/x' }\n").unwrap();
    let fail = notice(
        Topic::Rollout,
        State::Failure,
        "Progressing@step 1 → RollingBack: success rate 90% < 99%",
    );
    let (url, slack) = request(&n, 0, &fail).unwrap();
    assert_eq!(url, "https://hooks.slack.com/services/T/B/X");
    let text = slack["text"].as_str().unwrap();
    assert!(
        text.starts_with("meshplan rollout shop/cart: Progressing@step 1 → RollingBack"),
        "{text}"
    );
    assert!(text.ends_with("(revision 0123456789ab)"), "{text}");
    let (_, teams) = request(&n, 1, &fail).unwrap();
    assert_eq!(teams["type"], "message");
    let card = &teams["attachments"][0];
    assert_eq!(
        card["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    assert_eq!(card["content"]["type"], "AdaptiveCard");
    assert_eq!(card["content"]["body"][0]["type"], "TextBlock");
    assert_eq!(card["content"]["body"][0]["text"], fail.text());
    let long = notice(Topic::Reconcile, State::Failure, &"x".repeat(3000));
    let (_, discord) = request(&n, 2, &long).unwrap();
    assert_eq!(discord["content"].as_str().unwrap().chars().count(), 2000);
    assert_eq!(discord["allowed_mentions"], json!({"parse": []}));
}

#[test]
fn commit_statuses_go_to_the_revisions_commit() {
    let n = notifier("sinks:\n  - { name: gh, type: github, repository: acme/intents }\n  - { name: gl, type: gitlab, url: 'https://gitlab.example/', repository: group/intents, context: deploy }\n").unwrap();
    let ok = notice(Topic::Reconcile, State::Success, "applied 12 objects");
    let (url, body) = request(&n, 0, &ok).unwrap();
    assert_eq!(url, "https://api.github.com/repos/acme/intents/statuses/0123456789abcdef0123456789abcdef01234567");
    assert_eq!(
        body,
        json!({"state": "success", "description": "applied 12 objects", "context": "meshplan"})
    );
    let (url, body) = request(&n, 1, &ok).unwrap();
    assert_eq!(url, "https://gitlab.example/api/v4/projects/group%2Fintents/statuses/0123456789abcdef0123456789abcdef01234567");
    assert_eq!(
        body,
        json!({"state": "success", "name": "deploy", "description": "applied 12 objects"})
    );
    // A rollout has a status of its own; pending is GitLab's running.
    let going = notice(Topic::Rollout, State::Pending, &"y".repeat(300));
    let (_, body) = request(&n, 0, &going).unwrap();
    assert_eq!(body["context"], "meshplan/rollout shop/cart");
    assert_eq!(body["description"].as_str().unwrap().len(), 140);
    assert_eq!(request(&n, 1, &going).unwrap().1["state"], "running");
    // A folder's revision names its checkout's HEAD; without one it is
    // no commit, and gets no status.
    let mut folder = ok.clone();
    folder.revision = Some("0123456789abcdef0123456789abcdef01234567@1733412345-9".into());
    assert!(request(&n, 0, &folder)
        .unwrap()
        .0
        .ends_with("/statuses/0123456789abcdef0123456789abcdef01234567"));
    folder.revision = Some("local@1733412345-9".into());
    assert!(request(&n, 0, &folder).is_err());
    assert!(!n.sinks[0].concerns(&folder), "no status to send");
}

#[test]
fn a_generic_template_gets_escaped_fields() {
    let n = notifier("sinks:\n  - name: g\n    type: generic\n    url: https://ops.example/in\n    template: '{\"summary\": \"{{subject}}: {{message}}\", \"level\": \"{{state}}\", \"kind\": \"{{kind}}\"}'\n").unwrap();
    let tricky = notice(
        Topic::Reconcile,
        State::Failure,
        "bad \"quote\"\nand a line",
    );
    let (_, body) = request(&n, 0, &tricky).unwrap();
    assert_eq!(body["summary"], "shop/cart: bad \"quote\"\nand a line");
    assert_eq!(body["level"], "failure");
    assert_eq!(body["kind"], "reconcile");
    // The default template carries every field.
    let n = notifier("sinks:\n  - { name: g, type: generic, url: 'https://ops.example/in' }\n")
        .unwrap();
    let (_, body) = request(&n, 0, &tricky).unwrap();
    assert_eq!(body["revision"], "0123456789abcdef0123456789abcdef01234567");
}

#[test]
fn the_same_notice_is_sent_once_per_repeat_interval() {
    let n = notifier("sinks:\n  - { name: s, type: slack, url: 'https://h/x' }\n").unwrap();
    let a = notice(Topic::Reconcile, State::Failure, "check failed");
    assert_eq!(admit(&n, &a), Some(0));
    assert_eq!(admit(&n, &a), None, "a repeat");
    let b = notice(Topic::Reconcile, State::Success, "applied");
    assert_eq!(admit(&n, &b), Some(0), "a change is news");
    assert_eq!(admit(&n, &a), Some(0), "and so is going back");
    let mut other = a.clone();
    other.subject = "shop/other".into();
    assert_eq!(admit(&n, &other), Some(0), "another subject");
}

#[test]
fn over_the_rate_notices_are_dropped_and_counted() {
    let n = notifier("perMinute: 3\nsinks:\n  - { name: s, type: slack, url: 'https://h/x' }\n")
        .unwrap();
    for i in 0..3 {
        let m = notice(Topic::Rollout, State::Pending, &format!("move {i}"));
        assert_eq!(admit(&n, &m), Some(0));
    }
    for i in 3..5 {
        let m = notice(Topic::Rollout, State::Pending, &format!("move {i}"));
        assert_eq!(admit(&n, &m), None);
    }
    // A minute later the next one goes, and says two were dropped.
    {
        let mut m = n.memory.lock().unwrap();
        let (times, _) = m.recent.get_mut(&0).unwrap();
        let past = Instant::now() - Duration::from_secs(61);
        times.iter_mut().for_each(|t| *t = past);
    }
    let m = notice(Topic::Rollout, State::Pending, "move 5");
    assert_eq!(admit(&n, &m), Some(2));
}

#[test]
fn mistakes_in_the_file_are_errors() {
    for (yaml, says) in [
        ("sinks:\n  - { name: s, type: slack }\n", "give its `url` or `urlFile`"),
        ("sinks:\n  - { name: g, type: github }\n", "needs `repository`"),
        ("sinks:\n  - { name: s, type: slack, url: 'https://h', urlFile: /x }\n", "not both"),
        ("sinks:\n  - { name: s, type: slack, urlFile: /nonexistent/url }\n", "cannot read the secret file"),
        ("sinks:\n  - { name: g, type: generic, url: 'https://h', template: '{\"a\": {{message}}}' }\n", "does not make JSON"),
        ("repeatInterval: soon\n", "invalid duration"),
    ] {
        let e = notifier(yaml).err().unwrap_or_default();
        assert!(e.contains(says), "{yaml}: {e}");
    }
    assert!(notifier("sinks:\n  - { name: s, type: pager, url: 'https://h' }\n").is_err());
    assert!(
        notifier("sink: []\n").is_err(),
        "unknown fields are refused"
    );
}

#[test]
fn a_chat_webhooks_url_is_never_shown_and_undelivered_notices_are_not_repeats() {
    let n = notifier("sinks:\n  - { name: s, type: slack, url: 'https://hooks.slack.com/services/T0/B0/SECRET' }\n  - { name: gh, type: github, url: 'https://127.0.0.1:9', repository: a/b }\n").unwrap();
    let shown = n.sinks[0].shown("https://hooks.slack.com/services/T0/B0/SECRET");
    assert_eq!(shown, "the webhook at hooks.slack.com");
    // Nobody listens on port 9: the warning names the sink, and the same
    // notice is tried again next time rather than taken for a repeat.
    let down = notifier(
        "sinks:\n  - { name: s, type: discord, url: 'http://127.0.0.1:9/api/webhooks/1/TOKEN' }\n",
    )
    .unwrap();
    let a = notice(Topic::Reconcile, State::Failure, "check failed");
    let w = down.send(&a);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].starts_with("notification sink `s`: the webhook at 127.0.0.1:9")
            && !w[0].contains("TOKEN"),
        "{w:?}"
    );
    assert_eq!(down.admit(0, &down.sinks[0], &a), Some(0));
    // Commit statuses: a state on a commit once, whatever its description;
    // never rate-limited.
    let gh = &n.sinks[1];
    let running = notice(Topic::Rollout, State::Pending, "step 0");
    assert_eq!(n.admit(1, gh, &running), Some(0));
    n.delivered(1, gh, &running);
    let next = notice(Topic::Rollout, State::Pending, "step 1");
    assert_eq!(n.admit(1, gh, &next), None, "pending again is no news");
}

/// A sink whose URL file is gone by the time a notice is sent: the
/// warning names the sink once, with why (it named it twice).
#[test]
fn an_unsendable_notice_names_its_sink_once() {
    let dir = std::env::temp_dir().join(format!("meshplan-notify-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = dir.join("url");
    std::fs::write(&url, "https://hooks.slack.com/services/T/B/X\n").unwrap();
    let n = notifier(&format!(
        "sinks:\n  - {{ name: chat, type: slack, urlFile: {} }}\n",
        url.display()
    ))
    .unwrap();
    std::fs::remove_file(&url).unwrap();
    let warnings = n.send(&notice(Topic::Rollout, State::Failure, "rolled back"));
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with("notification sink `chat`: cannot read the secret file"),
        "{warnings:?}"
    );
    assert_eq!(warnings[0].matches("chat").count(), 1, "{warnings:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
