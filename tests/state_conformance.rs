//! One conformance suite for every state backend: memory, local (redb) and
//! DynamoDB (on a single-threaded moto, so that conditional writes are
//! atomic as they are on AWS). Every case runs against all three.
//!
//! Times are passed in, so lease expiry, GCRA refills and cooldowns are
//! tested without waiting.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use reflex::aws::dynamodb_state::DynamoDbStore;
use reflex::rules::Rate;
use reflex::state::local::LocalStore;
use reflex::state::memory::MemoryStore;
use reflex::state::{
    ClaimRequest, Claimed, Completion, CooldownStart, Lease, RateTake, StateStore, StoreError,
    TargetLease,
};
use support::MotoServer;

type Store = Arc<dyn StateStore>;

fn t(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000 + secs, 0)
        .single()
        .expect("a valid time")
}

fn req(key: &str, owner: &str, lease_s: u64) -> ClaimRequest {
    ClaimRequest {
        key: key.to_string(),
        rule: "rule-a".to_string(),
        target: "elb:web".to_string(),
        owner: owner.to_string(),
        lease: Duration::from_secs(lease_s),
    }
}

fn done(outcome: &str) -> Completion {
    Completion {
        outcome: outcome.to_string(),
        remember: Duration::from_secs(3600),
        cooldown: None,
    }
}

fn rate(s: &str) -> Rate {
    Rate::parse(s).expect("a valid rate")
}

fn take(bucket: &str, r: &str, n: u32) -> RateTake {
    RateTake {
        bucket: bucket.to_string(),
        rate: rate(r),
        n,
    }
}

fn lease_of(c: &Claimed) -> Lease {
    match c {
        Claimed::New(l) | Claimed::TakenOver { lease: l, .. } => l.clone(),
        other => panic!("expected a claim, got {other:?}"),
    }
}

fn is_lost<T: std::fmt::Debug>(r: &Result<T, StoreError>) -> bool {
    matches!(r, Err(StoreError::Lost { .. }))
}

// ---- the cases -----------------------------------------------------------

async fn racing_claimers_exactly_one_wins(s: Store) {
    let mut tasks = Vec::new();
    for i in 0..12 {
        let s = Arc::clone(&s);
        tasks.push(tokio::spawn(async move {
            s.claim(&req("tr#rule-a#0", &format!("replica-{i}"), 30), t(0))
                .await
        }));
    }
    let mut won = Vec::new();
    let mut busy = 0;
    for task in tasks {
        match task.await.expect("task") {
            Ok(Claimed::New(l)) => won.push(l),
            Ok(Claimed::Busy { .. }) => busy += 1,
            other => panic!("unexpected claim result {other:?}"),
        }
    }
    assert_eq!(won.len(), 1, "exactly one claimer wins");
    assert_eq!(busy, 11);
    s.complete(&won[0], &done("done"), t(1))
        .await
        .expect("complete");
    match s.claim(&req("tr#rule-a#0", "late", 30), t(2)).await {
        Ok(Claimed::Done { outcome, at }) => {
            assert_eq!(outcome, "done");
            assert_eq!(at, t(1));
        }
        other => panic!("a redelivery after completion is Done, got {other:?}"),
    }
    // A second delivery handled by the *same* replica is still busy: claims
    // are told apart by token, not by owner.
    let mine = s.claim(&req("tr#b#0", "replica-0", 30), t(0)).await;
    assert!(matches!(mine, Ok(Claimed::New(_))), "{mine:?}");
    let again = s.claim(&req("tr#b#0", "replica-0", 30), t(0)).await;
    assert!(matches!(again, Ok(Claimed::Busy { .. })), "{again:?}");
}

async fn lease_expiry_and_takeover(s: Store) {
    let a = lease_of(&s.claim(&req("k", "a", 10), t(0)).await.expect("claim"));
    match s.claim(&req("k", "b", 10), t(9)).await {
        Ok(Claimed::Busy { holder, until }) => {
            assert_eq!(holder, "a");
            assert_eq!(until, t(10));
        }
        other => panic!("a running lease keeps the claim, got {other:?}"),
    }
    // A heartbeat pushes expiry out.
    let a = s
        .heartbeat(&a, Duration::from_secs(10), t(8))
        .await
        .expect("heartbeat");
    assert_eq!(a.until, t(18));
    assert!(matches!(
        s.claim(&req("k", "b", 10), t(15)).await,
        Ok(Claimed::Busy { .. })
    ));
    // Dead holder: after its lease, racers take over, exactly one of them.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let s = Arc::clone(&s);
        tasks.push(tokio::spawn(async move {
            s.claim(&req("k", &format!("b{i}"), 10), t(18)).await
        }));
    }
    let mut taken = Vec::new();
    for task in tasks {
        match task.await.expect("task") {
            Ok(Claimed::TakenOver {
                lease,
                previous_owner,
            }) => {
                assert_eq!(previous_owner, "a", "the takeover names the dead holder");
                taken.push(lease);
            }
            Ok(Claimed::Busy { .. }) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(taken.len(), 1, "exactly one replica takes over");
    let b = taken.remove(0);
    // The old holder has lost it: no heartbeat, no completion, no release.
    assert!(is_lost(
        &s.heartbeat(&a, Duration::from_secs(10), t(19)).await
    ));
    assert!(is_lost(&s.complete(&a, &done("late"), t(19)).await));
    assert!(is_lost(&s.release(&a).await));
    s.complete(&b, &done("done after takeover"), t(20))
        .await
        .expect("the new holder completes");
    let snap = s.snapshot().await.expect("snapshot");
    let rec = snap
        .claims
        .iter()
        .find(|c| c.key == "k")
        .expect("claim listed");
    assert_eq!(rec.takeovers, 1);
    assert_eq!(rec.previous_owner.as_deref(), Some("a"));
    assert_eq!(rec.outcome.as_deref(), Some("done after takeover"));
    // Completed claims are remembered for their window, then free again.
    assert!(matches!(
        s.claim(&req("k", "c", 10), t(20 + 3599)).await,
        Ok(Claimed::Done { .. })
    ));
    assert!(matches!(
        s.claim(&req("k", "c", 10), t(20 + 3600)).await,
        Ok(Claimed::New(_))
    ));
}

async fn release_after_a_transient_failure(s: Store) {
    let a = lease_of(&s.claim(&req("r", "a", 60), t(0)).await.expect("claim"));
    let stranger = Lease {
        token: "not-the-token".into(),
        ..a.clone()
    };
    assert!(
        is_lost(&s.release(&stranger).await),
        "only the holder releases"
    );
    assert!(is_lost(&s.complete(&stranger, &done("x"), t(1)).await));
    s.release(&a).await.expect("release");
    match s.claim(&req("r", "b", 60), t(1)).await {
        Ok(Claimed::New(_)) => {}
        other => panic!("a released claim is free at once and not a takeover: {other:?}"),
    }
    assert!(is_lost(&s.release(&a).await), "released twice");
}

async fn gcra_limits(s: Store) {
    for i in 0..5 {
        assert_eq!(
            s.take(&[take("rule r", "5/hour", 1)], None, t(0)).await,
            Ok(Ok(())),
            "call {i}"
        );
    }
    let limited = s
        .take(&[take("rule r", "5/hour", 1)], None, t(0))
        .await
        .expect("store")
        .expect_err("the sixth call in an hour is limited");
    assert_eq!(limited.bucket, "rule r");
    assert_eq!(limited.retry_after, Some(Duration::from_secs(720)));
    assert_eq!(
        s.take(&[take("rule other", "5/hour", 1)], None, t(0)).await,
        Ok(Ok(())),
        "buckets are separate"
    );
    assert_eq!(
        s.take(&[take("rule r", "5/hour", 1)], None, t(720)).await,
        Ok(Ok(())),
        "a cell came back after period/count"
    );
    let too_many = s
        .take(&[take("global", "5/hour", 6)], None, t(0))
        .await
        .expect("store")
        .expect_err("more than the burst");
    assert_eq!(too_many.retry_after, None);

    // Several buckets: all or nothing.
    assert_eq!(
        s.take(&[take("global", "3/hour", 3)], None, t(0)).await,
        Ok(Ok(()))
    );
    let both = s
        .take(
            &[take("rule fresh", "2/hour", 1), take("global", "3/hour", 1)],
            None,
            t(0),
        )
        .await
        .expect("store");
    assert_eq!(both.expect_err("global is empty").bucket, "global");
    assert_eq!(
        s.take(&[take("rule fresh", "2/hour", 2)], None, t(0)).await,
        Ok(Ok(())),
        "the refused multi-bucket take took nothing from the rule bucket"
    );

    // Concurrent takers never exceed the burst.
    let mut tasks = Vec::new();
    for _ in 0..12 {
        let s = Arc::clone(&s);
        tasks.push(tokio::spawn(async move {
            s.take(&[take("shared", "4/hour", 1)], None, t(0)).await
        }));
    }
    let mut ok = 0;
    for task in tasks {
        match task.await.expect("task").expect("store") {
            Ok(()) => ok += 1,
            Err(l) => assert!(l.retry_after.is_some()),
        }
    }
    assert_eq!(ok, 4, "exactly the burst got through");

    // Fenced by a claim: only while it is ours.
    let a = lease_of(&s.claim(&req("f", "a", 10), t(0)).await.expect("claim"));
    assert_eq!(
        s.take(&[take("fenced", "5/hour", 1)], Some(&a), t(1)).await,
        Ok(Ok(()))
    );
    let b = lease_of(&s.claim(&req("f", "b", 10), t(11)).await.expect("takeover"));
    assert!(is_lost(
        &s.take(&[take("fenced", "5/hour", 1)], Some(&a), t(12))
            .await
    ));
    assert_eq!(
        s.take(&[take("fenced", "5/hour", 4)], Some(&b), t(12))
            .await,
        Ok(Ok(())),
        "the lost holder's take took nothing"
    );
    let snap = s.snapshot().await.expect("snapshot");
    assert!(snap
        .rates
        .iter()
        .any(|r| r.bucket == "rule r" && r.rate == "5/hour"));
}

async fn cooldowns(s: Store) {
    assert_eq!(s.cooldown("rule-a", "elb:web", t(0)).await, Ok(None));
    let start = CooldownStart {
        rule: "rule-a".into(),
        target: "elb:web".into(),
        period: Duration::from_secs(600),
    };
    s.start_cooldown(&start, t(0)).await.expect("start");
    assert_eq!(
        s.cooldown("rule-a", "elb:web", t(100)).await,
        Ok(Some(Duration::from_secs(500)))
    );
    assert_eq!(
        s.cooldown("rule-a", "elb:api", t(100)).await,
        Ok(None),
        "per target"
    );
    assert_eq!(
        s.cooldown("rule-b", "elb:web", t(100)).await,
        Ok(None),
        "per rule"
    );
    // A shorter cooldown never shortens a running one.
    let short = CooldownStart {
        period: Duration::from_secs(60),
        ..start.clone()
    };
    s.start_cooldown(&short, t(100)).await.expect("start");
    assert_eq!(
        s.cooldown("rule-a", "elb:web", t(200)).await,
        Ok(Some(Duration::from_secs(400)))
    );
    assert_eq!(
        s.cooldown("rule-a", "elb:web", t(600)).await,
        Ok(None),
        "over"
    );

    // Completing a claim starts its cooldown in the same write.
    let a = lease_of(&s.claim(&req("c", "a", 30), t(1000)).await.expect("claim"));
    let completion = Completion {
        cooldown: Some(CooldownStart {
            rule: "rule-a".into(),
            target: "instance:i-1".into(),
            period: Duration::from_secs(300),
        }),
        ..done("done")
    };
    s.complete(&a, &completion, t(1000))
        .await
        .expect("complete");
    assert_eq!(
        s.cooldown("rule-a", "instance:i-1", t(1100)).await,
        Ok(Some(Duration::from_secs(200)))
    );
    // A lost claim completes nothing, and starts no cooldown.
    let b = lease_of(&s.claim(&req("c2", "b", 10), t(1000)).await.expect("claim"));
    let _ = lease_of(
        &s.claim(&req("c2", "c", 10), t(1011))
            .await
            .expect("takeover"),
    );
    let lost = Completion {
        cooldown: Some(CooldownStart {
            rule: "rule-a".into(),
            target: "instance:i-2".into(),
            period: Duration::from_secs(300),
        }),
        ..done("late")
    };
    assert!(is_lost(&s.complete(&b, &lost, t(1012)).await));
    assert_eq!(
        s.cooldown("rule-a", "instance:i-2", t(1013)).await,
        Ok(None)
    );

    assert_eq!(s.forget_cooldown("rule-a", "instance:i-1").await, Ok(true));
    assert_eq!(s.forget_cooldown("rule-a", "instance:i-1").await, Ok(false));
    assert_eq!(
        s.cooldown("rule-a", "instance:i-1", t(1100)).await,
        Ok(None)
    );
    let snap = s.snapshot().await.expect("snapshot");
    assert!(snap
        .cooldowns
        .iter()
        .any(|c| c.rule == "rule-a" && c.target == "elb:web"));
}

async fn target_leases(s: Store) {
    let mut tasks = Vec::new();
    for i in 0..10 {
        let s = Arc::clone(&s);
        tasks.push(tokio::spawn(async move {
            s.lease_target("elb:web", &format!("r{i}"), Duration::from_secs(30), t(0))
                .await
        }));
    }
    let mut held = Vec::new();
    let mut holders = BTreeSet::new();
    for task in tasks {
        match task.await.expect("task").expect("store") {
            TargetLease::Acquired(l) => held.push(l),
            TargetLease::Held { holder, until } => {
                assert_eq!(until, t(30));
                holders.insert(holder);
            }
        }
    }
    assert_eq!(held.len(), 1, "one replica at a time on a target");
    let a = held.remove(0);
    assert_eq!(
        holders.into_iter().collect::<Vec<_>>(),
        std::slice::from_ref(&a.owner)
    );
    // Another target is independent.
    assert!(matches!(
        s.lease_target("instance:i-1", "r9", Duration::from_secs(30), t(0))
            .await,
        Ok(TargetLease::Acquired(_))
    ));
    // Heartbeat keeps it; release frees it.
    let a = s
        .heartbeat(&a, Duration::from_secs(30), t(20))
        .await
        .expect("heartbeat");
    assert!(matches!(
        s.lease_target("elb:web", "other", Duration::from_secs(30), t(40))
            .await,
        Ok(TargetLease::Held { .. })
    ));
    let snap = s.snapshot().await.expect("snapshot");
    assert!(snap
        .targets
        .iter()
        .any(|l| l.target == "elb:web" && l.owner == a.owner));
    s.release(&a).await.expect("release");
    let b = match s
        .lease_target("elb:web", "other", Duration::from_secs(30), t(41))
        .await
    {
        Ok(TargetLease::Acquired(l)) => l,
        other => panic!("a released target is free: {other:?}"),
    };
    // A dead holder's target lease runs out.
    let c = match s
        .lease_target("elb:web", "third", Duration::from_secs(30), t(71))
        .await
    {
        Ok(TargetLease::Acquired(l)) => l,
        other => panic!("an expired target lease is free: {other:?}"),
    };
    assert!(is_lost(
        &s.heartbeat(&b, Duration::from_secs(30), t(72)).await
    ));
    assert!(is_lost(&s.release(&b).await));
    s.release(&c).await.expect("release");
}

/// The remediation budget: N attempts per target in a sliding window,
/// shared by every caller, refused (nothing recorded) once spent, and
/// racing spenders never overspend it.
async fn remediation_budgets(s: Store) {
    let budget = rate("3/24h");
    for (i, at) in [0, 60, 120].into_iter().enumerate() {
        let used = s.spend_budget("elb:web", budget, t(at)).await;
        assert_eq!(used, Ok(Ok(i as u32 + 1)), "attempt {i}");
    }
    match s.spend_budget("elb:web", budget, t(3600)).await {
        Ok(Err(e)) => {
            assert_eq!(e.used, 3);
            assert_eq!(e.target, "elb:web");
            // The first attempt (at 0) leaves the window at 24h.
            assert_eq!(e.retry_after, Duration::from_secs(86_400 - 3600));
        }
        other => panic!("the fourth attempt in a day is refused, got {other:?}"),
    }
    // Another target has its own budget.
    assert_eq!(s.spend_budget("elb:api", budget, t(3600)).await, Ok(Ok(1)));
    // Once the first attempt is a day old, one more is allowed, not two.
    assert_eq!(
        s.spend_budget("elb:web", budget, t(86_400)).await,
        Ok(Ok(3))
    );
    assert!(matches!(
        s.spend_budget("elb:web", budget, t(86_401)).await,
        Ok(Err(_))
    ));
    // Racing spenders: exactly the budget is granted.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let s = Arc::clone(&s);
        tasks.push(tokio::spawn(async move {
            s.spend_budget("tg:race", rate("3/1h"), t(0)).await
        }));
    }
    let mut granted = 0;
    for task in tasks {
        match task.await.expect("task") {
            Ok(Ok(_)) => granted += 1,
            Ok(Err(e)) => assert_eq!(e.used, 3),
            Err(e) => panic!("a racing spend failed: {e}"),
        }
    }
    assert_eq!(granted, 3, "racing spenders never overspend");
}

async fn all_cases(make: impl Fn(&str) -> Store) {
    remediation_budgets(make("budgets")).await;
    racing_claimers_exactly_one_wins(make("racing")).await;
    lease_expiry_and_takeover(make("takeover")).await;
    release_after_a_transient_failure(make("release")).await;
    gcra_limits(make("gcra")).await;
    cooldowns(make("cooldowns")).await;
    target_leases(make("targets")).await;
}

// ---- the backends --------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_backend_conforms() {
    all_cases(|_| Arc::new(MemoryStore::new()) as Store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_backend_conforms() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().to_path_buf();
    all_cases(move |name| {
        let store = LocalStore::open(&path.join(format!("{name}.redb")))
            .unwrap_or_else(|e| panic!("open local store: {e}"));
        Arc::new(store) as Store
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dynamodb_backend_conforms() {
    let moto = MotoServer::start_single_threaded();
    let mut stores = Vec::new();
    for name in [
        "racing",
        "takeover",
        "release",
        "gcra",
        "cooldowns",
        "targets",
        "budgets",
    ] {
        let table = format!("reflex-state-{name}");
        let client = moto.create_state_table(&table).await;
        stores.push((name, Arc::new(DynamoDbStore::new(client, table)) as Store));
    }
    all_cases(move |name| {
        stores
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, s)| Arc::clone(s))
            .unwrap_or_else(|| panic!("no table for case {name}"))
    })
    .await;
}

// ---- what only the local file does ----------------------------------------

#[tokio::test]
async fn a_local_file_held_by_a_live_store_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("state.redb");
    let first = LocalStore::open(&path).expect("open");
    match LocalStore::open(&path) {
        Err(e @ StoreError::Locked { .. }) => {
            let text = e.to_string();
            assert!(text.contains("held by another running reflex"), "{text}");
            assert!(text.contains(&path.display().to_string()), "{text}");
        }
        Err(other) => panic!("expected Locked, got {other}"),
        Ok(_) => panic!("a held file was opened twice"),
    }
    drop(first);
    LocalStore::open(&path).expect("free again once the holder is gone");
}

#[tokio::test]
async fn a_restarted_local_store_remembers_and_takes_over_at_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("state.redb");
    {
        let s = LocalStore::open(&path).expect("open");
        let a = lease_of(&s.claim(&req("done", "a", 600), t(0)).await.expect("claim"));
        s.complete(&a, &done("terminated i-1"), t(1))
            .await
            .expect("complete");
        // Left in progress, as by a process killed mid-action.
        let _ = s
            .claim(&req("orphan", "a", 600), t(2))
            .await
            .expect("claim");
        let _ = s
            .lease_target("elb:web", "a", Duration::from_secs(600), t(2))
            .await
            .expect("lease");
        s.start_cooldown(
            &CooldownStart {
                rule: "rule-a".into(),
                target: "elb:web".into(),
                period: Duration::from_secs(600),
            },
            t(2),
        )
        .await
        .expect("cooldown");
        assert_eq!(
            s.take(&[take("global", "2/hour", 2)], None, t(2)).await,
            Ok(Ok(()))
        );
    }
    let s = LocalStore::open(&path).expect("reopen");
    assert!(matches!(
        s.claim(&req("done", "b", 600), t(3)).await,
        Ok(Claimed::Done { .. })
    ));
    match s.claim(&req("orphan", "b", 600), t(3)).await {
        Ok(Claimed::TakenOver { previous_owner, .. }) => assert_eq!(previous_owner, "a"),
        other => panic!("the predecessor's claim is taken over at once, got {other:?}"),
    }
    assert!(matches!(
        s.lease_target("elb:web", "b", Duration::from_secs(60), t(3))
            .await,
        Ok(TargetLease::Acquired(_))
    ));
    assert_eq!(
        s.cooldown("rule-a", "elb:web", t(3)).await,
        Ok(Some(Duration::from_secs(599)))
    );
    assert!(
        s.take(&[take("global", "2/hour", 1)], None, t(3))
            .await
            .expect("store")
            .is_err(),
        "rate buckets survive a restart"
    );
}

// ---- `reflex state`, the real binary, on a local file ---------------------

fn reflex_state(path: &std::path::Path, args: &[&str]) -> std::process::Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_reflex"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("REFLEX_") {
            command.env_remove(name);
        }
    }
    command
        .env("REFLEX_STATE_PATH", path)
        .arg("state")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run reflex state")
}

#[tokio::test]
async fn reflex_state_lists_and_forgets_a_cooldown() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("state.redb");
    {
        let s = LocalStore::open(&path).expect("open");
        let now = Utc::now();
        let a = lease_of(
            &s.claim(&req("tr#rule-a#0", "a", 600), now)
                .await
                .expect("claim"),
        );
        let completion = Completion {
            cooldown: Some(CooldownStart {
                rule: "rule-a".into(),
                target: "elb:web".into(),
                period: Duration::from_secs(600),
            }),
            ..done("done")
        };
        s.complete(&a, &completion, now).await.expect("complete");
    }
    let out = reflex_state(&path, &["--json", "--rule", "rule-a"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listing: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(listing["transitions"][0]["outcome"], "done");
    assert_eq!(listing["cooldowns"][0]["target"], "elb:web");
    assert!(listing["cooldowns"][0]["remaining_s"]
        .as_i64()
        .is_some_and(|s| s > 500));

    let refused = reflex_state(&path, &["forget-cooldown", "rule-a", "elb:web"]);
    assert_eq!(
        refused.status.code(),
        Some(2),
        "without --yes nothing is cleared"
    );
    let forgot = reflex_state(&path, &["forget-cooldown", "rule-a", "elb:web", "--yes"]);
    assert!(
        forgot.status.success(),
        "{}",
        String::from_utf8_lossy(&forgot.stderr)
    );
    let record: serde_json::Value = serde_json::from_slice(&forgot.stdout).expect("audit JSON");
    assert_eq!(record["type"], "operator");
    assert_eq!(record["command"], "forget-cooldown");
    let s = LocalStore::open(&path).expect("reopen");
    assert_eq!(s.cooldown("rule-a", "elb:web", Utc::now()).await, Ok(None));
}
