//! Between followup's domain and its wire types: plans, tasks and events out; engagement,
//! outcomes and activation's events in.

use jiff::Timestamp;
use prost::Message;
use proto::activation::v1 as apb;
use proto::followup::v1 as pb;
use runtime::grpc::to_proto_timestamp;
use uuid::Uuid;

use crate::domain::{
    Cause, Change, Channel, Deferral, Engagement, Enrollment, LeadFacts, Plan, ProofSlot,
    ReplySentiment, Status, Strategy, Task, TaskOutcome, Upcoming,
};

pub fn channel_to_proto(c: Channel) -> apb::Channel {
    match c {
        Channel::Call => apb::Channel::Call,
        Channel::Email => apb::Channel::Email,
        Channel::Sms => apb::Channel::Sms,
        Channel::Linkedin => apb::Channel::Linkedin,
    }
}

pub fn channel_from_proto(c: apb::Channel) -> Option<Channel> {
    match c {
        apb::Channel::Unspecified => None,
        apb::Channel::Call => Some(Channel::Call),
        apb::Channel::Email => Some(Channel::Email),
        apb::Channel::Sms => Some(Channel::Sms),
        apb::Channel::Linkedin => Some(Channel::Linkedin),
    }
}

pub fn strategy_to_proto(s: Strategy) -> pb::Strategy {
    match s {
        Strategy::Value => pb::Strategy::Value,
        Strategy::Proof => pb::Strategy::Proof,
        Strategy::PeerStory => pb::Strategy::PeerStory,
        Strategy::Urgency => pb::Strategy::Urgency,
        Strategy::CheckIn => pb::Strategy::CheckIn,
        Strategy::BreakUp => pb::Strategy::BreakUp,
    }
}

pub fn outcome_to_proto(o: TaskOutcome) -> pb::TaskOutcome {
    match o {
        TaskOutcome::Done => pb::TaskOutcome::Done,
        TaskOutcome::NoAnswer => pb::TaskOutcome::NoAnswer,
        TaskOutcome::LeftVoicemail => pb::TaskOutcome::LeftVoicemail,
        TaskOutcome::Connected => pb::TaskOutcome::Connected,
        TaskOutcome::WrongNumber => pb::TaskOutcome::WrongNumber,
    }
}

pub fn outcome_from_proto(o: pb::TaskOutcome) -> Option<TaskOutcome> {
    match o {
        pb::TaskOutcome::Unspecified => None,
        pb::TaskOutcome::Done => Some(TaskOutcome::Done),
        pb::TaskOutcome::NoAnswer => Some(TaskOutcome::NoAnswer),
        pb::TaskOutcome::LeftVoicemail => Some(TaskOutcome::LeftVoicemail),
        pb::TaskOutcome::Connected => Some(TaskOutcome::Connected),
        pb::TaskOutcome::WrongNumber => Some(TaskOutcome::WrongNumber),
    }
}

/// The wire kind and sentiment of an engagement.
pub fn engagement_to_proto(e: &Engagement) -> (pb::EngagementKind, pb::ReplySentiment) {
    use pb::EngagementKind as K;
    match e {
        Engagement::Reply { sentiment } => (
            K::Reply,
            match sentiment {
                ReplySentiment::Positive => pb::ReplySentiment::Positive,
                ReplySentiment::Neutral => pb::ReplySentiment::Neutral,
                ReplySentiment::Negative => pb::ReplySentiment::Negative,
                ReplySentiment::RemoveMe => pb::ReplySentiment::RemoveMe,
            },
        ),
        Engagement::MeetingBooked => (K::MeetingBooked, pb::ReplySentiment::Unspecified),
        Engagement::Open => (K::Open, pb::ReplySentiment::Unspecified),
        Engagement::Click => (K::Click, pb::ReplySentiment::Unspecified),
        Engagement::SiteVisit => (K::SiteVisit, pb::ReplySentiment::Unspecified),
        Engagement::OutOfOffice { .. } => (K::OutOfOffice, pb::ReplySentiment::Unspecified),
        Engagement::Bounce { .. } => (K::Bounce, pb::ReplySentiment::Unspecified),
        Engagement::Unsubscribe => (K::Unsubscribe, pb::ReplySentiment::Unspecified),
    }
}

/// A stable code for a cause, as `Deferral.cause` and event reasons carry it.
pub fn cause_code(cause: Cause) -> &'static str {
    match cause {
        Cause::FrequencyCap => "frequency_cap",
        Cause::AttemptCap { .. } => "attempt_cap",
        Cause::ChannelBlocked { .. } => "channel_blocked",
        Cause::Unreachable { .. } => "unreachable",
        Cause::Silence { .. } => "silence",
        Cause::Unanswered { .. } => "unanswered",
        Cause::NoChannelLeft => "no_channel_left",
        Cause::CadenceFinished => "cadence_finished",
        Cause::HardBounce => "hard_bounce",
        Cause::WrongNumber => "wrong_number",
    }
}

/// A cause in words, for people reading a plan or an event.
pub fn cause_text(cause: Cause) -> String {
    match cause {
        Cause::FrequencyCap => "the contact reached the frequency cap".into(),
        Cause::AttemptCap { channel } => format!("{channel} reached its attempt cap"),
        Cause::ChannelBlocked { channel } => format!("{channel} is blocked for this lead"),
        Cause::Unreachable { channel } => format!("no {channel} details for this lead"),
        Cause::Silence { silence } => format!("silence read as {silence}"),
        Cause::Unanswered { steps } => format!("{steps} steps in a row unanswered"),
        Cause::NoChannelLeft => "no channel left to reach the lead".into(),
        Cause::CadenceFinished => "the cadence ended without a response".into(),
        Cause::HardBounce => "hard bounce".into(),
        Cause::WrongNumber => "wrong number".into(),
    }
}

fn deferral_to_proto(d: &Deferral) -> pb::Deferral {
    pb::Deferral {
        cause: cause_code(d.cause).into(),
        from: Some(to_proto_timestamp(d.from)),
        until: Some(to_proto_timestamp(d.until)),
    }
}

/// Task id on the wire: `<lead>/<task number>`.
pub fn task_id(lead: Uuid, task: u32) -> String {
    format!("{lead}/{task}")
}

/// The lead and task number of a task id.
pub fn parse_task_id(text: &str) -> Option<(Uuid, u32)> {
    let (lead, number) = text.split_once('/')?;
    Some((lead.parse().ok()?, number.parse().ok().filter(|n| *n > 0)?))
}

pub fn task_step(task: &Task) -> pb::Step {
    let (proof_asset_id, proof_note) = match &task.proof {
        Some(ProofSlot::Asset { asset_id, note }) => {
            (asset_id.clone(), note.clone().unwrap_or_default())
        }
        Some(ProofSlot::Unavailable) => (
            String::new(),
            "the proof service had no asset for this lead (or did not answer): the cadence's default template is used".into(),
        ),
        None => (String::new(), String::new()),
    };
    pb::Step {
        item: task.item.to_string(),
        channel: channel_to_proto(task.channel) as i32,
        strategy: strategy_to_proto(task.strategy) as i32,
        template_id: task.template.clone(),
        due_at: Some(to_proto_timestamp(
            task.deferrals.last().map_or(task.due_at, |d| d.until),
        )),
        fired_at: Some(to_proto_timestamp(task.fired_at)),
        outcome: task
            .outcome
            .map_or(pb::TaskOutcome::Unspecified, outcome_to_proto) as i32,
        completed_at: task.completed_at.map(to_proto_timestamp),
        missed: task.missed,
        deferrals: task.deferrals.iter().map(deferral_to_proto).collect(),
        proof_asset_id,
        proof_note,
        task_number: task.task,
        cancelled: task.cancelled,
    }
}

fn upcoming_step(plan: &Plan, next: &Upcoming) -> pb::Step {
    let approach = plan.next_approach.as_ref();
    pb::Step {
        item: next.item.to_string(),
        channel: approach.map_or(apb::Channel::Unspecified, |a| channel_to_proto(a.channel)) as i32,
        strategy: approach.map_or(pb::Strategy::Unspecified, |a| strategy_to_proto(a.strategy))
            as i32,
        template_id: approach.map(|a| a.template.clone()).unwrap_or_default(),
        due_at: Some(to_proto_timestamp(next.due_at)),
        deferrals: next.deferrals.iter().map(deferral_to_proto).collect(),
        ..Default::default()
    }
}

pub fn task_to_proto(
    enrollment: &Enrollment,
    task: &Task,
    context: Option<apb::ContextPacket>,
) -> pb::Task {
    pb::Task {
        task_id: task_id(enrollment.lead, task.task),
        lead_id: enrollment.lead.to_string(),
        owner_id: task.owner.clone(),
        cadence_id: enrollment.cadence.id.clone(),
        step: Some(task_step(task)),
        context,
    }
}

pub fn plan_to_proto(enrollment: &Enrollment, plan: &Plan) -> pb::Plan {
    let (status, paused_until, status_reason) = match &plan.status {
        Status::Active => (pb::PlanStatus::Active, None, String::new()),
        Status::Paused { until, cause, .. } => (
            pb::PlanStatus::Paused,
            until.map(to_proto_timestamp),
            match cause {
                crate::domain::PauseCause::Requested { reason } => reason.clone(),
                crate::domain::PauseCause::OutOfOffice => "out of office".into(),
            },
        ),
        Status::Stopped { reason, .. } => (
            if *reason == crate::domain::StopReason::OptedOut {
                pb::PlanStatus::OptedOut
            } else {
                pb::PlanStatus::Stopped
            },
            None,
            reason.as_str().to_owned(),
        ),
        Status::Nurture => (pb::PlanStatus::Nurture, None, String::new()),
        Status::Finished => (pb::PlanStatus::Finished, None, String::new()),
    };
    pb::Plan {
        lead_id: plan.lead.to_string(),
        cadence_id: plan.cadence.clone(),
        chosen_by: enrollment.chosen_by.clone(),
        owner_id: plan.owner.clone(),
        status: status as i32,
        steps_done: plan.tasks.iter().map(task_step).collect(),
        next_step: plan.next.as_ref().map(|n| upcoming_step(plan, n)),
        momentum: plan.momentum,
        paused_until,
        status_reason,
        unanswered_steps: enrollment.unanswered,
        enrolled_at: Some(to_proto_timestamp(enrollment.enrolled_at)),
    }
}

/// The wire event a change is published as; `None` for changes that only show in the plan.
pub fn change_to_event(
    enrollment: &Enrollment,
    plan: &pb::Plan,
    context: &[u8],
    change: &Change,
) -> Option<Box<dyn EventPayload>> {
    let lead_id = enrollment.lead.to_string();
    let event: Box<dyn EventPayload> = match change {
        Change::Enrolled { .. } => Box::new(pb::LeadEnrolled {
            plan: Some(plan.clone()),
        }),
        Change::FollowUpDue { task, .. } => Box::new(pb::FollowUpDue {
            task: Some(task_to_proto(
                enrollment,
                task,
                apb::ContextPacket::decode(context).ok(),
            )),
        }),
        Change::TaskCompleted { task, .. } => {
            let task = enrollment.tasks.get((*task as usize).checked_sub(1)?)?;
            Box::new(pb::TaskCompleted {
                task: Some(task_to_proto(enrollment, task, None)),
            })
        }
        Change::TaskMissed { task, owner } => Box::new(pb::TaskMissed {
            lead_id,
            task_id: task_id(enrollment.lead, *task),
            owner_id: owner.clone(),
        }),
        Change::StepDeferred {
            item,
            cause,
            from,
            until,
        } => Box::new(pb::StepDeferred {
            lead_id,
            item: item.to_string(),
            deferral: Some(deferral_to_proto(&Deferral {
                cause: *cause,
                from: *from,
                until: *until,
            })),
        }),
        Change::StrategyChanged {
            item,
            from,
            to,
            cause,
        } => Box::new(pb::StrategyChanged {
            lead_id,
            from_strategy: strategy_to_proto(from.strategy) as i32,
            to_strategy: strategy_to_proto(to.strategy) as i32,
            from_channel: channel_to_proto(from.channel) as i32,
            to_channel: channel_to_proto(to.channel) as i32,
            reason: cause_text(*cause),
            item: item.to_string(),
        }),
        Change::MomentumEscalated {
            score,
            threshold,
            owner,
            manager,
        } => Box::new(pb::MomentumEscalated {
            lead_id,
            owner_id: owner.clone(),
            manager_id: manager.clone().unwrap_or_default(),
            momentum: *score,
            threshold: *threshold,
        }),
        Change::Paused { until, cause } => Box::new(pb::CadencePaused {
            lead_id,
            until: until.map(to_proto_timestamp),
            reason: match cause {
                crate::domain::PauseCause::Requested { reason } => reason.clone(),
                crate::domain::PauseCause::OutOfOffice => "out of office".into(),
            },
        }),
        Change::Resumed { next_due } => Box::new(pb::CadenceResumed {
            lead_id,
            next_due: next_due.map(to_proto_timestamp),
        }),
        Change::CadenceStopped { reason, .. } => Box::new(pb::CadenceStopped {
            lead_id,
            reason: reason.as_str().into(),
            plan: Some(plan.clone()),
        }),
        Change::RecycledToNurture {
            cause,
            touches,
            first_touch_at,
        } => Box::new(pb::RecycledToNurture {
            lead_id,
            cadence_id: enrollment.cadence.id.clone(),
            reason: cause_code(*cause).into(),
            touches: *touches,
            next_touch_at: Some(to_proto_timestamp(*first_touch_at)),
        }),
        Change::NurtureFinished { touches } => Box::new(pb::NurtureFinished {
            lead_id,
            touches: *touches,
        }),
        Change::TasksCancelled { .. }
        | Change::TasksReassigned { .. }
        | Change::StepBroughtForward { .. }
        | Change::SilenceRead { .. }
        | Change::ChannelBlocked { .. }
        | Change::OptOutRequired { .. } => return None,
    };
    Some(event)
}

/// A change in words, for `RecordEngagementResponse.effect` and `EngagementRecorded.effect`.
pub fn change_text(change: &Change) -> Option<String> {
    Some(match change {
        Change::CadenceStopped { reason, hand_off } => {
            if *hand_off {
                format!("cadence stopped: {reason}; the lead is handed on")
            } else {
                format!("cadence stopped: {reason}")
            }
        }
        Change::OptOutRequired { .. } => {
            "opt-out: every pending step cancelled and the contact suppressed".into()
        }
        Change::Paused { until, .. } => match until {
            Some(until) => format!("cadence paused until {until}"),
            None => "cadence paused".into(),
        },
        Change::Resumed { .. } => "cadence resumed".into(),
        Change::ChannelBlocked { channel, cause } => {
            format!("{channel} blocked ({})", cause_text(*cause))
        }
        Change::StrategyChanged { to, cause, .. } => format!(
            "next steps go out as {} by {} ({})",
            to.strategy,
            to.channel,
            cause_text(*cause)
        ),
        Change::StepBroughtForward {
            item, to, channel, ..
        } => {
            format!("{item} brought forward to {to} as a {channel}")
        }
        Change::SilenceRead {
            silence, response, ..
        } => format!("silence read as {silence}: {response}"),
        Change::MomentumEscalated { .. } => "momentum fell below the threshold: escalated".into(),
        _ => return None,
    })
}

/// A prost message that can be appended to the event log.
pub trait EventPayload: Send {
    fn to_event(&self, aggregate: &str, at: Timestamp) -> runtime::NewEvent;
}

impl<M: prost::Name + Send> EventPayload for M {
    fn to_event(&self, aggregate: &str, at: Timestamp) -> runtime::NewEvent {
        runtime::NewEvent::new(aggregate.to_owned(), self, at)
    }
}

/// What followup enrols from activation's `LeadActivated`: the facts the rules read, plus the
/// context packet handed to the owner with each task.
pub fn facts_from_activation(activation: &apb::Activation) -> Option<LeadFacts> {
    let lead: Uuid = activation.lead_id.parse().ok()?;
    let context = activation.context.clone().unwrap_or_default();
    let non_empty = |s: &str| (!s.trim().is_empty()).then(|| s.trim().to_owned());
    Some(LeadFacts {
        lead,
        owner_id: activation.owner_id.clone(),
        manager_id: non_empty(&activation.manager_id),
        intent_kind: context.intent_kind.clone(),
        source: context.source.clone(),
        segment: context
            .attributes
            .get("segment")
            .cloned()
            .unwrap_or_default(),
        icp_tier: context.icp_tier.clone(),
        lead_timezone: non_empty(&context.timezone),
        owner_timezone: non_empty(&activation.owner_timezone),
        has_email: !context.email.trim().is_empty(),
        has_phone: !context.phone.trim().is_empty(),
        email: non_empty(&context.email),
        phone: non_empty(&context.phone),
    })
}

/// One of followup's stored events without the person (for an erasure): a task's context
/// packet is blanked. `None` for event types that carry none.
pub fn redact_event(type_name: &str, payload: &[u8]) -> Option<Vec<u8>> {
    use prost::Name;
    fn scrub(task: &mut Option<pb::Task>) {
        if let Some(task) = task.as_mut() {
            if let Some(context) = task.context.as_mut() {
                context.erase_personal_data();
            }
            // Proof's note quotes the lead's objection; the "no asset" explanation does not.
            if let Some(step) = task.step.as_mut()
                && !step.proof_asset_id.is_empty()
            {
                step.proof_note.clear();
            }
        }
    }
    if type_name == pb::FollowUpDue::full_name() {
        let mut event = pb::FollowUpDue::decode(payload).ok()?;
        scrub(&mut event.task);
        Some(event.encode_to_vec())
    } else if type_name == pb::TaskCompleted::full_name() {
        let mut event = pb::TaskCompleted::decode(payload).ok()?;
        scrub(&mut event.task);
        Some(event.encode_to_vec())
    } else {
        None
    }
}
