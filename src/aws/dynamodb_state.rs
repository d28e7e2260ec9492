//! The shared state store, on DynamoDB: any number of replicas on one table.
//!
//! Every decision is [`crate::state::decide`]'s, written here as a condition
//! expression; when a condition fails, the item DynamoDB returns with it
//! (`ReturnValuesOnConditionCheckFailure = ALL_OLD`) is read with the same
//! decide functions, so a lost race costs no second read. Reads are
//! `ConsistentRead`. Where several conditions must hold together
//! (completing a claim and starting its cooldown; taking from several rate
//! buckets while a claim is still ours) the writes go in one
//! `TransactWriteItems`. `expires_at` only lets DynamoDB's TTL collect old
//! items; no decision reads it.
//!
//! Item layout (hash key `pk`, sort key `sk`, both strings):
//!
//! | pk         | sk                   | attributes |
//! |------------|----------------------|------------|
//! | `claim`    | transition#rule#index | `st` (`IN_PROGRESS`/`COMPLETED`), `owner`, `token`, `rule`, `target`, `claimed_at`, `lease_until`, `takeovers`, `previous_owner`, `outcome`, `done_at`, `done_until` |
//! | `cooldown` | rule `\n` target     | `rule`, `target`, `started_at`, `until` |
//! | `rate`     | bucket               | `rate`, `tat` |
//! | `target`   | target               | `owner`, `token`, `acquired_at`, `lease_until` |
//!
//! Times are epoch milliseconds (N), except `expires_at` (epoch seconds, N).
//! Operations used: GetItem, PutItem, UpdateItem, DeleteItem,
//! TransactWriteItems (with ConditionCheck), Query.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, Put, ReturnValue, ReturnValuesOnConditionCheckFailure,
    TransactWriteItem, Update,
};
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Utc};

use super::sdk::classify;
use crate::state::decide::{self, ClaimDecision};
use crate::state::kv::cooldown_key;
use crate::state::{
    new_token, ClaimRecord, ClaimRequest, ClaimStatus, Claimed, Completion, CooldownRecord,
    CooldownStart, Lease, LeaseKind, RateLimited, RateRecord, RateTake, Snapshot, StateStore,
    StoreError, TargetLease, TargetRecord,
};

type Item = HashMap<String, AttributeValue>;

const SERVICE: &str = "dynamodb";
const CLAIM: &str = "claim";
const COOLDOWN: &str = "cooldown";
const RATE: &str = "rate";
const TARGET: &str = "target";
const BUDGET: &str = "budget";

/// How many times an optimistic write is retried after losing a race.
const RACE_RETRIES: usize = 8;

/// Every attribute an expression names, by alias: several are DynamoDB
/// reserved words (`owner`, `token`, `until`...), so expressions only ever
/// use the aliases.
const NAMES: &[(&str, &str)] = &[
    ("#pk", "pk"),
    ("#st", "st"),
    ("#owner", "owner"),
    ("#token", "token"),
    ("#lease_until", "lease_until"),
    ("#done_until", "done_until"),
    ("#outcome", "outcome"),
    ("#done_at", "done_at"),
    ("#expires_at", "expires_at"),
    ("#until", "until"),
    ("#tat", "tat"),
    ("#ver", "ver"),
];

fn names(used: &[&str]) -> Option<HashMap<String, String>> {
    Some(
        NAMES
            .iter()
            .filter(|(alias, _)| used.contains(alias))
            .map(|(a, n)| ((*a).to_string(), (*n).to_string()))
            .collect(),
    )
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn key(pk: &str, sk: &str) -> Item {
    HashMap::from([("pk".to_string(), s(pk)), ("sk".to_string(), s(sk))])
}

fn corrupt(what: &str, item: &Item) -> StoreError {
    let pk = get_s(item, "pk").unwrap_or_default();
    let sk = get_s(item, "sk").unwrap_or_default();
    StoreError::Permanent(format!(
        "DynamoDB item ({pk}, {sk}) is not a valid {what} record"
    ))
}

fn get_s(item: &Item, name: &str) -> Option<String> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Some(v.clone()),
        _ => None,
    }
}

fn get_n(item: &Item, name: &str) -> Option<i64> {
    match item.get(name) {
        Some(AttributeValue::N(v)) => v.parse().ok(),
        _ => None,
    }
}

fn claim_item(r: &ClaimRecord) -> Item {
    let mut item = key(CLAIM, &r.key);
    item.insert("st".into(), s(r.status.as_str()));
    item.insert("owner".into(), s(&r.owner));
    item.insert("token".into(), s(&r.token));
    item.insert("rule".into(), s(&r.rule));
    item.insert("target".into(), s(&r.target));
    item.insert("claimed_at".into(), n(r.claimed_at));
    item.insert("lease_until".into(), n(r.lease_until));
    item.insert("takeovers".into(), n(i64::from(r.takeovers)));
    if let Some(p) = &r.previous_owner {
        item.insert("previous_owner".into(), s(p));
    }
    if let Some(o) = &r.outcome {
        item.insert("outcome".into(), s(o));
    }
    if let Some(t) = r.done_at {
        item.insert("done_at".into(), n(t));
    }
    if let Some(t) = r.done_until {
        item.insert("done_until".into(), n(t));
    }
    item.insert("expires_at".into(), n(decide::claim_expires_at(r)));
    item
}

fn claim_record(item: &Item) -> Result<ClaimRecord, StoreError> {
    let bad = || corrupt("claim", item);
    Ok(ClaimRecord {
        key: get_s(item, "sk").ok_or_else(bad)?,
        rule: get_s(item, "rule").unwrap_or_default(),
        target: get_s(item, "target").unwrap_or_default(),
        status: get_s(item, "st")
            .as_deref()
            .and_then(ClaimStatus::parse)
            .ok_or_else(bad)?,
        owner: get_s(item, "owner").ok_or_else(bad)?,
        token: get_s(item, "token").ok_or_else(bad)?,
        claimed_at: get_n(item, "claimed_at").unwrap_or_default(),
        lease_until: get_n(item, "lease_until").ok_or_else(bad)?,
        takeovers: get_n(item, "takeovers")
            .and_then(|t| u32::try_from(t).ok())
            .unwrap_or_default(),
        previous_owner: get_s(item, "previous_owner"),
        outcome: get_s(item, "outcome"),
        done_at: get_n(item, "done_at"),
        done_until: get_n(item, "done_until"),
    })
}

fn cooldown_record(item: &Item) -> Result<CooldownRecord, StoreError> {
    let bad = || corrupt("cooldown", item);
    Ok(CooldownRecord {
        rule: get_s(item, "rule").ok_or_else(bad)?,
        target: get_s(item, "target").ok_or_else(bad)?,
        started_at: get_n(item, "started_at").unwrap_or_default(),
        until: get_n(item, "until").ok_or_else(bad)?,
    })
}

fn cooldown_item(r: &CooldownRecord) -> Item {
    let mut item = key(COOLDOWN, &cooldown_key(&r.rule, &r.target));
    item.insert("rule".into(), s(&r.rule));
    item.insert("target".into(), s(&r.target));
    item.insert("started_at".into(), n(r.started_at));
    item.insert("until".into(), n(r.until));
    item.insert("expires_at".into(), n(decide::expires_at(r.until)));
    item
}

fn rate_record(item: &Item) -> Result<RateRecord, StoreError> {
    let bad = || corrupt("rate", item);
    Ok(RateRecord {
        bucket: get_s(item, "sk").ok_or_else(bad)?,
        rate: get_s(item, "rate").unwrap_or_default(),
        tat: get_n(item, "tat").ok_or_else(bad)?,
    })
}

fn rate_item(r: &RateRecord) -> Item {
    let mut item = key(RATE, &r.bucket);
    item.insert("rate".into(), s(&r.rate));
    item.insert("tat".into(), n(r.tat));
    item.insert("expires_at".into(), n(decide::expires_at(r.tat)));
    item
}

/// A budget item: its attempts (epoch ms, comma-separated) and a version
/// that every write bumps, for the optimistic condition.
fn budget_attempts(item: &Item) -> Result<(Vec<i64>, i64), StoreError> {
    let bad = || corrupt("budget", item);
    let attempts = get_s(item, "attempts")
        .unwrap_or_default()
        .split(',')
        .filter(|a| !a.is_empty())
        .map(|a| a.parse::<i64>().map_err(|_| bad()))
        .collect::<Result<Vec<i64>, StoreError>>()?;
    Ok((attempts, get_n(item, "ver").ok_or_else(bad)?))
}

fn budget_item(target: &str, attempts: &[i64], ver: i64, window: Duration) -> Item {
    let mut item = key(BUDGET, target);
    let text: Vec<String> = attempts.iter().map(i64::to_string).collect();
    item.insert("attempts".into(), s(text.join(",")));
    item.insert("ver".into(), n(ver));
    let last = attempts.last().copied().unwrap_or_default();
    item.insert(
        "expires_at".into(),
        n(decide::expires_at(last.saturating_add(decide::ms(window)))),
    );
    item
}

fn target_record(item: &Item) -> Result<TargetRecord, StoreError> {
    let bad = || corrupt("target lease", item);
    Ok(TargetRecord {
        target: get_s(item, "sk").ok_or_else(bad)?,
        owner: get_s(item, "owner").ok_or_else(bad)?,
        token: get_s(item, "token").ok_or_else(bad)?,
        acquired_at: get_n(item, "acquired_at").unwrap_or_default(),
        lease_until: get_n(item, "lease_until").ok_or_else(bad)?,
    })
}

fn target_item(r: &TargetRecord) -> Item {
    let mut item = key(TARGET, &r.target);
    item.insert("owner".into(), s(&r.owner));
    item.insert("token".into(), s(&r.token));
    item.insert("acquired_at".into(), n(r.acquired_at));
    item.insert("lease_until".into(), n(r.lease_until));
    item.insert("expires_at".into(), n(decide::expires_at(r.lease_until)));
    item
}

fn lease_pk(lease: &Lease) -> &'static str {
    match lease.kind {
        LeaseKind::Claim => CLAIM,
        LeaseKind::Target => TARGET,
    }
}

/// The condition "this lease is still ours", for either kind.
fn held_condition(lease: &Lease) -> (String, Vec<&'static str>, Item) {
    let mut values = HashMap::from([
        (":owner".to_string(), s(&lease.owner)),
        (":token".to_string(), s(&lease.token)),
    ]);
    match lease.kind {
        LeaseKind::Claim => {
            values.insert(":inprog".into(), s(ClaimStatus::InProgress.as_str()));
            (
                "#owner = :owner AND #token = :token AND #st = :inprog".to_string(),
                vec!["#owner", "#token", "#st"],
                values,
            )
        }
        LeaseKind::Target => (
            "#owner = :owner AND #token = :token".to_string(),
            vec!["#owner", "#token"],
            values,
        ),
    }
}

fn lost(lease: &Lease, old: Option<&Item>) -> StoreError {
    let what = match lease.kind {
        LeaseKind::Claim => format!("claim {}", lease.key),
        LeaseKind::Target => format!("target lease {}", lease.key),
    };
    StoreError::Lost {
        what,
        holder: old.and_then(|i| get_s(i, "owner")),
    }
}

fn build_failed(e: impl std::fmt::Display) -> StoreError {
    StoreError::Permanent(format!("cannot build a DynamoDB request: {e}"))
}

/// Turns an SDK failure into a store error (transient or permanent).
fn sdk_failed<E>(
    operation: &'static str,
    err: SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>,
) -> StoreError
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let e = classify(SERVICE, operation, err);
    if e.transient {
        StoreError::Unavailable(e.to_string())
    } else {
        StoreError::Permanent(e.to_string())
    }
}

/// What a conditional write found.
enum Write {
    Done,
    /// The condition failed; the item as it was (if any).
    Refused(Option<Item>),
}

/// The state store on one DynamoDB table.
#[derive(Clone, Debug)]
pub struct DynamoDbStore {
    client: Client,
    table: String,
}

impl DynamoDbStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoDbStore {
            client,
            table: table.into(),
        }
    }

    /// A client from the standard AWS configuration chain (which honours
    /// `AWS_ENDPOINT_URL_DYNAMODB`), with short timeouts: a store that does
    /// not answer fails closed quickly and the message is retried.
    pub async fn from_env(table: impl Into<String>) -> Self {
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(3))
            .operation_attempt_timeout(Duration::from_secs(5))
            .operation_timeout(Duration::from_secs(15))
            .build();
        let config = super::sdk::sdk_defaults()
            .timeout_config(timeouts)
            .load()
            .await;
        DynamoDbStore::new(Client::new(&config), table)
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    async fn get(&self, pk: &str, sk: &str) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(pk, sk)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_failed("GetItem", e))?;
        Ok(out.item().cloned())
    }

    /// PutItem under a condition; a refusal carries the item that refused.
    async fn put(
        &self,
        item: Item,
        condition: &str,
        used: &[&str],
        values: Item,
    ) -> Result<Write, StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(condition)
            .set_expression_attribute_names(names(used))
            .set_expression_attribute_values((!values.is_empty()).then_some(values))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(Write::Done),
            Err(e) => match e.as_service_error() {
                Some(se) if se.is_conditional_check_failed_exception() => {
                    let old = match se {
                        aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(c) => c.item().cloned(),
                        _ => None,
                    };
                    Ok(Write::Refused(old))
                }
                _ => Err(sdk_failed("PutItem", e)),
            },
        }
    }

    async fn update(
        &self,
        key: Item,
        update: &str,
        condition: &str,
        used: &[&str],
        values: Item,
    ) -> Result<Write, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .update_expression(update)
            .condition_expression(condition)
            .set_expression_attribute_names(names(used))
            .set_expression_attribute_values(Some(values))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(Write::Done),
            Err(e) => match e.as_service_error() {
                Some(se) if se.is_conditional_check_failed_exception() => {
                    let old = match se {
                        aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(c) => c.item().cloned(),
                        _ => None,
                    };
                    Ok(Write::Refused(old))
                }
                _ => Err(sdk_failed("UpdateItem", e)),
            },
        }
    }

    /// TransactWriteItems; on cancellation, each item's (code, old item).
    async fn transact(
        &self,
        items: Vec<TransactWriteItem>,
    ) -> Result<Result<(), Vec<(Option<String>, Option<Item>)>>, StoreError> {
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        match result {
            Ok(_) => Ok(Ok(())),
            Err(e) => match e.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(c)) => Ok(Err(c
                    .cancellation_reasons()
                    .iter()
                    .map(|r| (r.code().map(str::to_string), r.item().cloned()))
                    .collect())),
                _ => Err(sdk_failed("TransactWriteItems", e)),
            },
        }
    }

    async fn query(&self, pk: &str) -> Result<Vec<Item>, StoreError> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#pk = :pk")
                .set_expression_attribute_names(names(&["#pk"]))
                .expression_attribute_values(":pk", s(pk))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| sdk_failed("Query", e))?;
            items.extend(out.items().iter().cloned());
            match out.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return Ok(items),
            }
        }
    }

    fn claim_update(&self, lease: &Lease, completion: &Completion, now: i64) -> (String, Item) {
        let done_until = decide::renewed(now, completion.remember);
        let expires = decide::expires_at(done_until);
        let mut values = HashMap::from([
            (":completed".to_string(), s(ClaimStatus::Completed.as_str())),
            (":outcome".to_string(), s(&completion.outcome)),
            (":done_at".to_string(), n(now)),
            (":done_until".to_string(), n(done_until)),
            (":expires".to_string(), n(expires)),
        ]);
        let (_, _, held) = held_condition(lease);
        values.extend(held);
        (
            "SET #st = :completed, #outcome = :outcome, #done_at = :done_at, #done_until = :done_until, #expires_at = :expires".to_string(),
            values,
        )
    }
}

const CLAIM_UPDATE_NAMES: &[&str] = &[
    "#st",
    "#outcome",
    "#done_at",
    "#done_until",
    "#expires_at",
    "#owner",
    "#token",
];

#[async_trait]
impl StateStore for DynamoDbStore {
    fn describe(&self) -> String {
        format!("dynamodb {}", self.table)
    }

    async fn claim(&self, req: &ClaimRequest, now: DateTime<Utc>) -> Result<Claimed, StoreError> {
        let now = decide::millis(now);
        let token = new_token();
        // First try: the transition is new (the common case, one call).
        let mut seen: Option<ClaimRecord> = None;
        for _ in 0..RACE_RETRIES {
            let record = decide::claimed(req, &token, seen.as_ref(), now);
            let (condition, used, values): (&str, Vec<&str>, Item) = match &seen {
                None => ("attribute_not_exists(#pk)", vec!["#pk"], HashMap::new()),
                // decide::claim said Take or TakeOver: the same predicate,
                // fenced on the token we saw so a concurrent taker loses.
                Some(old) => (
                    "#token = :old_token AND ((#st = :inprog AND #lease_until <= :now) OR (#st = :completed AND #done_until <= :now))",
                    vec!["#token", "#st", "#lease_until", "#done_until"],
                    HashMap::from([
                        (":old_token".to_string(), s(&old.token)),
                        (":inprog".to_string(), s(ClaimStatus::InProgress.as_str())),
                        (":completed".to_string(), s(ClaimStatus::Completed.as_str())),
                        (":now".to_string(), n(now)),
                    ]),
                ),
            };
            match self
                .put(claim_item(&record), condition, &used, values)
                .await?
            {
                Write::Done => {
                    let lease = decide::claim_lease(&record);
                    return Ok(match (&seen, decide::claim(seen.as_ref(), now)) {
                        (Some(_), ClaimDecision::TakeOver { previous_owner }) => {
                            Claimed::TakenOver {
                                lease,
                                previous_owner,
                            }
                        }
                        _ => Claimed::New(lease),
                    });
                }
                Write::Refused(None) => seen = None,
                Write::Refused(Some(old)) => {
                    let old = claim_record(&old)?;
                    match decide::claim(Some(&old), now) {
                        ClaimDecision::Busy { holder, until } => {
                            return Ok(Claimed::Busy {
                                holder,
                                until: decide::time(until),
                            })
                        }
                        ClaimDecision::Done { outcome, at } => {
                            return Ok(Claimed::Done {
                                outcome,
                                at: decide::time(at),
                            })
                        }
                        ClaimDecision::Take | ClaimDecision::TakeOver { .. } => seen = Some(old),
                    }
                }
            }
        }
        Err(StoreError::Unavailable(format!(
            "claim {} kept changing under {RACE_RETRIES} attempts",
            req.key
        )))
    }

    async fn heartbeat(
        &self,
        lease: &Lease,
        extend: Duration,
        now: DateTime<Utc>,
    ) -> Result<Lease, StoreError> {
        let until = decide::renewed(decide::millis(now), extend);
        let (condition, mut used, mut values) = held_condition(lease);
        used.extend(["#lease_until", "#expires_at"]);
        values.insert(":until".into(), n(until));
        let expires = match lease.kind {
            LeaseKind::Claim => decide::renewed(until, decide::IN_PROGRESS_RETENTION) / 1000,
            LeaseKind::Target => decide::expires_at(until),
        };
        values.insert(":expires".into(), n(expires));
        match self
            .update(
                key(lease_pk(lease), &lease.key),
                "SET #lease_until = :until, #expires_at = :expires",
                &condition,
                &used,
                values,
            )
            .await?
        {
            Write::Done => Ok(Lease {
                until: decide::time(until),
                ..lease.clone()
            }),
            Write::Refused(old) => Err(lost(lease, old.as_ref())),
        }
    }

    async fn complete(
        &self,
        lease: &Lease,
        completion: &Completion,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if lease.kind != LeaseKind::Claim {
            return Err(lost(lease, None));
        }
        let now_ms = decide::millis(now);
        let (update, values) = self.claim_update(lease, completion, now_ms);
        let (condition, _, _) = held_condition(lease);
        let Some(cooldown) = &completion.cooldown else {
            return match self
                .update(
                    key(CLAIM, &lease.key),
                    &update,
                    &condition,
                    CLAIM_UPDATE_NAMES,
                    values,
                )
                .await?
            {
                Write::Done => Ok(()),
                Write::Refused(old) => Err(lost(lease, old.as_ref())),
            };
        };
        // The outcome and the cooldown hold together. The cooldown never
        // shortens: read it, then write on condition it did not change.
        let ck = cooldown_key(&cooldown.rule, &cooldown.target);
        let mut seen = self.get(COOLDOWN, &ck).await?;
        for _ in 0..RACE_RETRIES {
            let existing = seen
                .as_ref()
                .map(cooldown_record)
                .transpose()?
                .map(|c| c.until)
                .filter(|u| *u > now_ms);
            let record = CooldownRecord {
                rule: cooldown.rule.clone(),
                target: cooldown.target.clone(),
                started_at: now_ms,
                until: decide::cooldown_until(existing, cooldown.period, now_ms),
            };
            let (cond, used, cvalues) = match seen.as_ref().and_then(|i| get_n(i, "until")) {
                None => ("attribute_not_exists(#pk)", vec!["#pk"], None),
                Some(u) => (
                    "#until = :seen_until",
                    vec!["#until"],
                    Some(HashMap::from([(":seen_until".to_string(), n(u))])),
                ),
            };
            let claim = Update::builder()
                .table_name(&self.table)
                .set_key(Some(key(CLAIM, &lease.key)))
                .update_expression(&update)
                .condition_expression(&condition)
                .set_expression_attribute_names(names(CLAIM_UPDATE_NAMES))
                .set_expression_attribute_values(Some(values.clone()))
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .build()
                .map_err(build_failed)?;
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(cooldown_item(&record)))
                .condition_expression(cond)
                .set_expression_attribute_names(names(&used))
                .set_expression_attribute_values(cvalues)
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .build()
                .map_err(build_failed)?;
            let items = vec![
                TransactWriteItem::builder().update(claim).build(),
                TransactWriteItem::builder().put(put).build(),
            ];
            match self.transact(items).await? {
                Ok(()) => return Ok(()),
                Err(reasons) => {
                    let failed = |i: usize| {
                        reasons
                            .get(i)
                            .and_then(|(c, _)| c.as_deref())
                            .is_some_and(|c| c == "ConditionalCheckFailed")
                    };
                    if failed(0) {
                        return Err(lost(lease, reasons.first().and_then(|r| r.1.as_ref())));
                    }
                    seen = if failed(1) {
                        reasons.get(1).and_then(|r| r.1.clone())
                    } else {
                        self.get(COOLDOWN, &ck).await?
                    };
                }
            }
        }
        Err(StoreError::Unavailable(format!(
            "cooldown {} kept changing under {RACE_RETRIES} attempts",
            ck.replace('\n', " on ")
        )))
    }

    async fn release(&self, lease: &Lease) -> Result<(), StoreError> {
        let (condition, used, values) = held_condition(lease);
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(lease_pk(lease), &lease.key)))
            .condition_expression(condition)
            .set_expression_attribute_names(names(&used))
            .set_expression_attribute_values(Some(values))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) => match e.as_service_error() {
                Some(aws_sdk_dynamodb::operation::delete_item::DeleteItemError::ConditionalCheckFailedException(c)) => {
                    Err(lost(lease, c.item()))
                }
                _ => Err(sdk_failed("DeleteItem", e)),
            },
        }
    }

    async fn cooldown(
        &self,
        rule: &str,
        target: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Duration>, StoreError> {
        let item = self.get(COOLDOWN, &cooldown_key(rule, target)).await?;
        let until = item
            .as_ref()
            .map(cooldown_record)
            .transpose()?
            .map(|c| c.until);
        Ok(decide::cooldown_remaining(until, decide::millis(now)))
    }

    async fn start_cooldown(
        &self,
        start: &CooldownStart,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let now = decide::millis(now);
        let record = CooldownRecord {
            rule: start.rule.clone(),
            target: start.target.clone(),
            started_at: now,
            until: decide::cooldown_until(None, start.period, now),
        };
        // Never shorten a running cooldown: a refused write means a longer
        // one is already there, which is what we want.
        let values = HashMap::from([(":until".to_string(), n(record.until))]);
        match self
            .put(
                cooldown_item(&record),
                "attribute_not_exists(#pk) OR #until < :until",
                &["#pk", "#until"],
                values,
            )
            .await?
        {
            Write::Done | Write::Refused(_) => Ok(()),
        }
    }

    async fn forget_cooldown(&self, rule: &str, target: &str) -> Result<bool, StoreError> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(COOLDOWN, &cooldown_key(rule, target))))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| sdk_failed("DeleteItem", e))?;
        Ok(out.attributes().is_some_and(|a| !a.is_empty()))
    }

    async fn take(
        &self,
        takes: &[RateTake],
        fence: Option<&Lease>,
        now: DateTime<Utc>,
    ) -> Result<Result<(), RateLimited>, StoreError> {
        let now = decide::millis(now);
        // Each bucket once, in first-seen order (a transaction may touch an
        // item only once).
        let mut buckets: Vec<String> = Vec::new();
        for t in takes {
            if !buckets.contains(&t.bucket) {
                buckets.push(t.bucket.clone());
            }
        }
        let mut seen: HashMap<String, Option<i64>> = HashMap::new();
        for b in &buckets {
            let item = self.get(RATE, b).await?;
            let tat = item.as_ref().map(rate_record).transpose()?.map(|r| r.tat);
            seen.insert(b.clone(), tat);
        }
        for _ in 0..RACE_RETRIES {
            let mut next: HashMap<String, RateRecord> = HashMap::new();
            for t in takes {
                let tat = match next.get(&t.bucket) {
                    Some(r) => Some(r.tat),
                    None => seen.get(&t.bucket).copied().flatten(),
                };
                match decide::gcra(tat, t, now) {
                    Ok(tat) => {
                        next.insert(
                            t.bucket.clone(),
                            RateRecord {
                                bucket: t.bucket.clone(),
                                rate: t.rate.to_string(),
                                tat,
                            },
                        );
                    }
                    Err(limited) => return Ok(Err(limited)),
                }
            }
            let condition = |b: &str| match seen.get(b).copied().flatten() {
                None => ("attribute_not_exists(#pk)", vec!["#pk"], None::<Item>),
                Some(tat) => (
                    "#tat = :seen_tat",
                    vec!["#tat"],
                    Some(HashMap::from([(":seen_tat".to_string(), n(tat))])),
                ),
            };
            let writes: Vec<&RateRecord> = buckets.iter().filter_map(|b| next.get(b)).collect();
            if fence.is_none() && writes.len() == 1 {
                let r = writes[0];
                let (cond, used, values) = condition(&r.bucket);
                match self
                    .put(rate_item(r), cond, &used, values.unwrap_or_default())
                    .await?
                {
                    Write::Done => return Ok(Ok(())),
                    Write::Refused(old) => {
                        let tat = old.as_ref().map(rate_record).transpose()?.map(|r| r.tat);
                        seen.insert(r.bucket.clone(), tat);
                        continue;
                    }
                }
            }
            let mut items = Vec::new();
            for r in &writes {
                let (cond, used, values) = condition(&r.bucket);
                let put = Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(rate_item(r)))
                    .condition_expression(cond)
                    .set_expression_attribute_names(names(&used))
                    .set_expression_attribute_values(values)
                    .return_values_on_condition_check_failure(
                        ReturnValuesOnConditionCheckFailure::AllOld,
                    )
                    .build()
                    .map_err(build_failed)?;
                items.push(TransactWriteItem::builder().put(put).build());
            }
            if let Some(lease) = fence {
                let (cond, used, values) = held_condition(lease);
                let check = ConditionCheck::builder()
                    .table_name(&self.table)
                    .set_key(Some(key(lease_pk(lease), &lease.key)))
                    .condition_expression(cond)
                    .set_expression_attribute_names(names(&used))
                    .set_expression_attribute_values(Some(values))
                    .return_values_on_condition_check_failure(
                        ReturnValuesOnConditionCheckFailure::AllOld,
                    )
                    .build()
                    .map_err(build_failed)?;
                items.push(TransactWriteItem::builder().condition_check(check).build());
            }
            if items.is_empty() {
                return Ok(Ok(()));
            }
            match self.transact(items).await? {
                Ok(()) => return Ok(Ok(())),
                Err(reasons) => {
                    let refused = |(code, _): &(Option<String>, Option<Item>)| {
                        code.as_deref() == Some("ConditionalCheckFailed")
                    };
                    if let Some(lease) = fence {
                        if let Some(r) = reasons.get(writes.len()).filter(|r| refused(r)) {
                            return Err(lost(lease, r.1.as_ref()));
                        }
                    }
                    let mut reread = false;
                    for (r, reason) in writes.iter().zip(&reasons) {
                        if refused(reason) {
                            let tat = reason
                                .1
                                .as_ref()
                                .map(rate_record)
                                .transpose()?
                                .map(|r| r.tat);
                            seen.insert(r.bucket.clone(), tat);
                        } else if reason.0.as_deref().is_some_and(|c| c != "None") {
                            reread = true;
                        }
                    }
                    if reread {
                        // A conflict with another transaction: read afresh.
                        for b in &buckets {
                            let item = self.get(RATE, b).await?;
                            let tat = item.as_ref().map(rate_record).transpose()?.map(|r| r.tat);
                            seen.insert(b.clone(), tat);
                        }
                    }
                }
            }
        }
        Err(StoreError::Unavailable(format!(
            "rate buckets {buckets:?} kept changing under {RACE_RETRIES} attempts"
        )))
    }

    async fn spend_budget(
        &self,
        target: &str,
        budget: crate::rules::Rate,
        now: DateTime<Utc>,
    ) -> Result<Result<u32, crate::state::BudgetExhausted>, StoreError> {
        let now = decide::millis(now);
        let mut seen = self
            .get(BUDGET, target)
            .await?
            .as_ref()
            .map(budget_attempts)
            .transpose()?;
        for _ in 0..RACE_RETRIES {
            let (attempts, ver) = seen.clone().unwrap_or_default();
            let attempts = match decide::spend_budget(&attempts, budget, now) {
                Ok(a) => a,
                Err((used, retry_ms)) => {
                    return Ok(Err(crate::state::BudgetExhausted {
                        target: target.to_string(),
                        budget,
                        used,
                        retry_after: Duration::from_millis(u64::try_from(retry_ms).unwrap_or(1)),
                    }))
                }
            };
            // decide::spend_budget, under "nobody spent since we read".
            let (condition, used, values) = match &seen {
                None => ("attribute_not_exists(#pk)", vec!["#pk"], HashMap::new()),
                Some(_) => (
                    "#ver = :seen_ver",
                    vec!["#ver"],
                    HashMap::from([(":seen_ver".to_string(), n(ver))]),
                ),
            };
            let item = budget_item(target, &attempts, ver + 1, budget.per);
            match self.put(item, condition, &used, values).await? {
                Write::Done => return Ok(Ok(u32::try_from(attempts.len()).unwrap_or(u32::MAX))),
                Write::Refused(old) => {
                    seen = old.as_ref().map(budget_attempts).transpose()?;
                }
            }
        }
        Err(StoreError::Unavailable(format!(
            "the budget of {target} kept changing under {RACE_RETRIES} attempts to spend it"
        )))
    }

    async fn lease_target(
        &self,
        target: &str,
        owner: &str,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<TargetLease, StoreError> {
        let now = decide::millis(now);
        let record = TargetRecord {
            target: target.to_string(),
            owner: owner.to_string(),
            token: new_token(),
            acquired_at: now,
            lease_until: decide::renewed(now, lease),
        };
        // decide::target_free, as a condition.
        let values = HashMap::from([(":now".to_string(), n(now))]);
        match self
            .put(
                target_item(&record),
                "attribute_not_exists(#pk) OR #lease_until <= :now",
                &["#pk", "#lease_until"],
                values,
            )
            .await?
        {
            Write::Done => Ok(TargetLease::Acquired(Lease {
                kind: LeaseKind::Target,
                key: record.target,
                owner: record.owner,
                token: record.token,
                until: decide::time(record.lease_until),
            })),
            Write::Refused(Some(old)) => {
                let old = target_record(&old)?;
                Ok(TargetLease::Held {
                    holder: old.owner,
                    until: decide::time(old.lease_until),
                })
            }
            Write::Refused(None) => Err(StoreError::Unavailable(format!(
                "target lease {target} was refused without the item that refused it"
            ))),
        }
    }

    async fn snapshot(&self) -> Result<Snapshot, StoreError> {
        let mut snap = Snapshot::default();
        for item in self.query(CLAIM).await? {
            snap.claims.push(claim_record(&item)?);
        }
        for item in self.query(COOLDOWN).await? {
            snap.cooldowns.push(cooldown_record(&item)?);
        }
        for item in self.query(RATE).await? {
            snap.rates.push(rate_record(&item)?);
        }
        for item in self.query(TARGET).await? {
            snap.targets.push(target_record(&item)?);
        }
        Ok(snap)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.get("ping", "ping").await.map(drop)
    }
}
