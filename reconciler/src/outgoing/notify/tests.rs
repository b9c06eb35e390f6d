//! Each sink's request as its API documents it, deduplication, the rate
//! limit, and mistakes in the file.

use super::*;

fn notifier(yaml: &str) -> Result<Notifier, String> {
    let file: File = serde_saphyr::from_str(yaml).map_err(|e| e.to_string())?;
    Notifier::new(file, Arc::new(Http::default()))
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

fn request(n: &Notifier, sink: usize, notice: &Notice) -> Option<(String, Value)> {
    n.sinks[sink].request(notice)
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
    assert_eq!(card["content"]["body"][0]["text"], text);
    let long = notice(Topic::Reconcile, State::Failure, &"x".repeat(3000));
    let (_, discord) = request(&n, 2, &long).unwrap();
    assert_eq!(discord["content"].as_str().unwrap().chars().count(), 2000);
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
    assert!(request(&n, 0, &folder).is_none());
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
    assert_eq!(n.admit(0, &a), Some(0));
    assert_eq!(n.admit(0, &a), None, "a repeat");
    let b = notice(Topic::Reconcile, State::Success, "applied");
    assert_eq!(n.admit(0, &b), Some(0), "a change is news");
    assert_eq!(n.admit(0, &a), Some(0), "and so is going back");
    let mut other = a.clone();
    other.subject = "shop/other".into();
    assert_eq!(n.admit(0, &other), Some(0), "another subject");
}

#[test]
fn over_the_rate_notices_are_dropped_and_counted() {
    let n = notifier("perMinute: 3\nsinks:\n  - { name: s, type: slack, url: 'https://h/x' }\n")
        .unwrap();
    for i in 0..3 {
        let m = notice(Topic::Rollout, State::Pending, &format!("move {i}"));
        assert_eq!(n.admit(0, &m), Some(0));
    }
    for i in 3..5 {
        let m = notice(Topic::Rollout, State::Pending, &format!("move {i}"));
        assert_eq!(n.admit(0, &m), None);
    }
    // A minute later the next one goes, and says two were dropped.
    {
        let mut m = n.memory.lock().unwrap();
        let (times, _) = m.recent.get_mut(&0).unwrap();
        let past = Instant::now() - Duration::from_secs(61);
        times.iter_mut().for_each(|t| *t = past);
    }
    let m = notice(Topic::Rollout, State::Pending, "move 5");
    assert_eq!(n.admit(0, &m), Some(2));
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
