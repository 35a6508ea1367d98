//! Feedback's use cases: project every upstream event into facts and timelines (in the
//! transaction that moves the consumer's cursor), record CRM outcomes, and answer reports,
//! verdicts and timelines from the projections. A rebuild drops the projections and lets the
//! consumers replay every stream from the start.

use std::sync::Arc;

use jiff::Timestamp;
use proto::events::v1::Event;
use runtime::consumer::{EventHandler, HandlerError};
use runtime::playbook::Playbook;
use runtime::{DbError, SharedClock, Tx};
use uuid::Uuid;

use crate::convert::decode;
use crate::domain::{
    Attribution, FeedbackError, Filter, Funnel, GroupBy, LeadFact, Observation, OutcomeReason,
    OutcomeStage, Period, RejectionFact, Report, Subject, Timeline, TimelineEntry, Verdict,
    attribute, check_outcome, timeline, verdict,
};
use crate::playbook::FeedbackPlaybook;
use crate::queries::{ReportRules, VerdictCode, VerdictCursor};
use crate::store::{Store, StoredOutcome};

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("feedback has not seen this lead (yet)")]
    NotFound,
    #[error(transparent)]
    Refused(#[from] FeedbackError),
    #[error(transparent)]
    Storage(#[from] DbError),
}

/// A lead's verdict as a report lists it.
#[derive(Debug, Clone)]
pub struct Judged {
    pub fact: LeadFact,
    pub verdict: Verdict,
    pub attribution: Option<Attribution>,
}

/// A page of a verdict listing.
#[derive(Debug, Clone)]
pub struct VerdictPage {
    pub verdicts: Vec<Judged>,
    /// Where the next page starts; `None` when this one is the last.
    pub next: Option<VerdictCursor>,
}

/// Feedback's application service.
#[derive(Debug, Clone)]
pub struct Feedback {
    store: Store,
    playbook: Playbook<FeedbackPlaybook>,
    clock: SharedClock,
}

impl Feedback {
    pub fn new(store: Store, playbook: Playbook<FeedbackPlaybook>, clock: SharedClock) -> Self {
        Self {
            store,
            playbook,
            clock,
        }
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now_micros()
    }

    pub fn playbook(&self) -> Arc<FeedbackPlaybook> {
        self.playbook.current()
    }

    fn backend(&self) -> runtime::Backend {
        self.store.db().backend()
    }

    /// Applies one observation to the projections it concerns.
    async fn observe(
        &self,
        tx: &mut Tx,
        observation: &Observation,
        context: Option<&[(String, String)]>,
    ) -> Result<(), DbError> {
        match observation.subject() {
            Subject::Lead(lead) => self.apply_to(tx, lead, observation, context).await,
            Subject::Leads(leads) => {
                for lead in leads {
                    self.apply_to(tx, *lead, observation, None).await?;
                }
                Ok(())
            }
            Subject::Rejection(_) => match observation {
                Observation::LeadRejected(rejected) => {
                    Store::save_rejection(tx, &RejectionFact::from(rejected)).await
                }
                _ => Ok(()),
            },
        }
    }

    async fn apply_to(
        &self,
        tx: &mut Tx,
        lead: Uuid,
        observation: &Observation,
        context: Option<&[(String, String)]>,
    ) -> Result<(), DbError> {
        let mut fact = Store::fact_for_update(tx, self.backend(), lead)
            .await?
            .unwrap_or_else(|| LeadFact::new(lead));
        fact.apply(observation);
        Store::save_fact(tx, &fact, context).await
    }

    /// Applies one event of any upstream service's stream.
    pub async fn apply_upstream_event(
        &self,
        tx: &mut Tx,
        event: &Event,
    ) -> Result<(), HandlerError> {
        let decoded = decode(event)?;
        let context = decoded.context.as_ref().map(|(_, c)| c.as_slice());
        for observation in &decoded.observations {
            self.observe(tx, observation, context).await?;
        }
        if let Some((lead, entry)) = &decoded.timeline {
            Store::add_timeline(tx, *lead, entry).await?;
        }
        for (lead, entry) in &decoded.erased {
            // Feedback holds two things the person wrote: the message in the preserved context
            // and the CRM's outcome notes. Both come from intake's stream (ordered before this
            // event) or from feedback's own API, so no copy can arrive after the erasure.
            // Counts, stages and reasons stay: the reports keep their totals.
            Store::erase_personal_data(tx, *lead).await?;
            Store::add_timeline(tx, *lead, entry).await?;
        }
        Ok(())
    }

    /// Records an outcome from the CRM; returns the lead's verdict after it.
    pub async fn record_outcome(
        &self,
        lead: Uuid,
        stage: OutcomeStage,
        reason: Option<OutcomeReason>,
        note: String,
        at: Option<Timestamp>,
    ) -> Result<Judged, ServiceError> {
        let now = self.now();
        let at = at.unwrap_or(now);
        check_outcome(stage, reason, at, now)?;
        let mut tx = self.store.db().begin().await?;
        if Store::fact_for_update(&mut tx, self.backend(), lead)
            .await?
            .is_none()
        {
            return Err(ServiceError::NotFound);
        }
        let outcome = StoredOutcome {
            lead,
            stage,
            reason,
            note,
            at,
        };
        Store::add_outcome(&mut tx, &outcome).await?;
        self.apply_outcome(&mut tx, &outcome).await?;
        tx.commit().await.map_err(DbError::from)?;
        self.judge(lead).await
    }

    async fn apply_outcome(&self, tx: &mut Tx, outcome: &StoredOutcome) -> Result<(), DbError> {
        let observation = Observation::OutcomeRecorded {
            lead: outcome.lead,
            stage: outcome.stage,
            reason: outcome.reason,
            at: outcome.at,
        };
        self.observe(tx, &observation, None).await?;
        let summary = match outcome.reason {
            Some(reason) => format!("CRM: {} ({reason})", outcome.stage),
            None => format!("CRM: {}", outcome.stage),
        };
        let entry = TimelineEntry {
            service: "feedback".into(),
            event_type: "OutcomeRecorded".into(),
            at: outcome.at,
            summary,
        };
        Store::add_timeline(tx, outcome.lead, &entry).await
    }

    /// Drops the projections and resets the consumers' cursors: the running consumers notice
    /// and replay every upstream stream from the start. The CRM's outcomes, which only
    /// feedback holds, are applied again at once.
    pub async fn rebuild(&self) -> Result<(), DbError> {
        let mut tx = self.store.clear_projections().await?;
        for outcome in Store::outcomes(&mut tx).await? {
            self.apply_outcome(&mut tx, &outcome).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    fn period(&self, from: Timestamp, to: Option<Timestamp>) -> Result<Period, ServiceError> {
        Ok(Period::new(from, to.unwrap_or_else(|| self.now()))?)
    }

    fn rules(&self) -> ReportRules {
        let playbook = self.playbook.current();
        ReportRules {
            fair_chance: playbook.fair_chance(),
            targeting: playbook.targeting_reasons(),
            persistence_touches: playbook.persistence_touches(),
            now: self.now(),
        }
    }

    /// One step of the background fold of settled leads into the report's rollups under
    /// the current playbook (see [`Store::fold_step`]); whether there is more to do.
    pub async fn fold_rollups(&self) -> Result<bool, DbError> {
        self.store
            .fold_step(&self.rules(), self.store.fold_chunk(), true)
            .await
    }

    /// The source report for leads received in `[from, to)`, aggregated by the store.
    pub async fn report(
        &self,
        from: Timestamp,
        to: Option<Timestamp>,
        by: GroupBy,
    ) -> Result<Report, ServiceError> {
        let period = self.period(from, to)?;
        Ok(self.store.report(period, by, &self.rules()).await?)
    }

    /// The funnel for leads received in `[from, to)`, optionally of one source.
    pub async fn funnel(
        &self,
        from: Timestamp,
        to: Option<Timestamp>,
        source: Option<String>,
    ) -> Result<Funnel, ServiceError> {
        let period = self.period(from, to)?;
        let filter = source.map(|value| Filter {
            by: GroupBy::Source,
            value,
        });
        Ok(self.store.funnel(period, filter.as_ref()).await?)
    }

    fn judge_fact(&self, fact: LeadFact) -> Judged {
        let playbook = self.playbook.current();
        let verdict = verdict(&fact, &playbook.fair_chance(), self.now());
        let attribution = attribute(&fact, &verdict, &playbook.targeting_reasons());
        Judged {
            fact,
            verdict,
            attribution,
        }
    }

    /// One page of the verdicts of the leads received in `[from, to)`, oldest first: the
    /// first `limit` after `after`, only those with the verdict `wanted` when given. The store
    /// selects the page (evaluating the rule in SQL); only its facts are loaded and judged
    /// here, for the reasons a listing shows.
    pub async fn verdicts(
        &self,
        from: Timestamp,
        to: Option<Timestamp>,
        wanted: Option<VerdictCode>,
        after: Option<VerdictCursor>,
        limit: u64,
    ) -> Result<VerdictPage, ServiceError> {
        let period = self.period(from, to)?;
        let rule = self.playbook.current().fair_chance();
        // One more than the page tells whether another page follows.
        let mut rows = self
            .store
            .verdict_page(
                period,
                &rule,
                self.now(),
                wanted,
                after,
                limit.saturating_add(1),
            )
            .await?;
        let more = rows.len() as u64 > limit;
        rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        let next = if more {
            rows.last().map(|(cursor, _)| *cursor)
        } else {
            None
        };
        Ok(VerdictPage {
            verdicts: rows.into_iter().map(|(_, f)| self.judge_fact(f)).collect(),
            next,
        })
    }

    /// One lead's verdict.
    pub async fn judge(&self, lead: Uuid) -> Result<Judged, ServiceError> {
        let (fact, _) = self.store.fact(lead).await?.ok_or(ServiceError::NotFound)?;
        Ok(self.judge_fact(fact))
    }

    /// Everything that happened to a lead, in order, with its context and verdict.
    pub async fn timeline(&self, lead: Uuid) -> Result<(Timeline, Judged), ServiceError> {
        let (fact, context) = self.store.fact(lead).await?.ok_or(ServiceError::NotFound)?;
        let entries = self.store.timeline(lead).await?;
        Ok((timeline(lead, context, entries), self.judge_fact(fact)))
    }
}

impl EventHandler for Feedback {
    async fn handle(&self, tx: &mut Tx, event: &Event) -> Result<(), HandlerError> {
        self.apply_upstream_event(tx, event).await
    }
}
