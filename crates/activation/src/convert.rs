//! Activation's wire types from its domain and records.

use jiff::{SignedDuration, Timestamp};
use prost::Message;
use proto::activation::v1 as pb;
use runtime::grpc::to_proto_timestamp;

use crate::domain::Channel;
use crate::domain::assign::Unassignable;
use crate::domain::breach::BreachCause;
use crate::domain::first_action::FirstActionPlan;
use crate::record::{ActivationRecord, State};

pub fn channel_to_proto(c: Channel) -> pb::Channel {
    match c {
        Channel::Call => pb::Channel::Call,
        Channel::Email => pb::Channel::Email,
        Channel::Sms => pb::Channel::Sms,
        Channel::Linkedin => pb::Channel::Linkedin,
    }
}

pub fn channel_from_proto(c: pb::Channel) -> Option<Channel> {
    match c {
        pb::Channel::Unspecified => None,
        pb::Channel::Call => Some(Channel::Call),
        pb::Channel::Email => Some(Channel::Email),
        pb::Channel::Sms => Some(Channel::Sms),
        pb::Channel::Linkedin => Some(Channel::Linkedin),
    }
}

pub fn state_to_proto(s: State) -> pb::ActivationState {
    match s {
        State::Queued => pb::ActivationState::Queued,
        State::Assigned => pb::ActivationState::Assigned,
        State::Activated => pb::ActivationState::Activated,
        State::Escalated => pb::ActivationState::Escalated,
        State::DoNotContact => pb::ActivationState::DoNotContact,
    }
}

pub fn cause_to_proto(c: BreachCause) -> pb::FailureCause {
    match c {
        BreachCause::RoutingDelay => pb::FailureCause::RoutingDelay,
        BreachCause::NoOwnerWorking => pb::FailureCause::NoOwnerWorking,
        BreachCause::AllOwnersAtCapacity => pb::FailureCause::AllOwnersAtCapacity,
        BreachCause::OwnerUnavailable => pb::FailureCause::OwnerUnavailable,
        BreachCause::OwnerLate => pb::FailureCause::OwnerLate,
    }
}

pub fn waiting_to_proto(c: Unassignable) -> pb::FailureCause {
    cause_to_proto(BreachCause::from(c))
}

pub fn plan_to_proto(plan: &FirstActionPlan) -> pb::FirstActionPlan {
    pb::FirstActionPlan {
        channel: channel_to_proto(plan.channel) as i32,
        template_id: plan.template.clone(),
        alternative_channels: plan
            .alternatives
            .iter()
            .map(|c| channel_to_proto(*c) as i32)
            .collect(),
        talking_points: plan.talking_points.clone(),
    }
}

pub fn duration_to_proto(d: SignedDuration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: d.as_secs(),
        nanos: d.subsec_nanos(),
    }
}

/// The wire activation as it stands at `now` (for the time remaining).
pub fn activation_to_proto(
    record: &ActivationRecord,
    context: &[u8],
    now: Timestamp,
) -> pb::Activation {
    pb::Activation {
        lead_id: record.lead.to_string(),
        state: state_to_proto(record.state) as i32,
        team_id: record.team.to_string(),
        owner_id: record
            .owner
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        routed_by: record.routed_by.clone(),
        sla_policy: record.sla_policy.clone(),
        received_at: Some(to_proto_timestamp(record.received_at)),
        assigned_at: record.assigned_at.map(to_proto_timestamp),
        deadline: Some(to_proto_timestamp(record.deadline)),
        remaining: record
            .state
            .is_open()
            .then(|| duration_to_proto(record.deadline.duration_since(now))),
        waiting_cause: record
            .waiting_cause
            .map_or(pb::FailureCause::Unspecified, waiting_to_proto) as i32,
        plan: Some(plan_to_proto(&record.plan)),
        context: pb::ContextPacket::decode(context).ok(),
        breaches: record.breaches,
        previous_owner_ids: record
            .previous_owners
            .iter()
            .map(ToString::to_string)
            .collect(),
        activated_at: record.activated_at.map(to_proto_timestamp),
        within_sla: record.within_sla,
        time_to_activation: record.time_to_activation.map(duration_to_proto),
        owner_timezone: record.owner_timezone.clone(),
        manager_id: record
            .manager
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
    }
}

/// One of activation's stored events without the personal data its snapshot carries (for an
/// erasure): the context packet is blanked and the talking points replaced by `talking_points`
/// (the erased lead's, which no longer quote the person). `None` for other event types.
pub fn redact_event(type_name: &str, payload: &[u8], talking_points: &[String]) -> Option<Vec<u8>> {
    use prost::{Message, Name};
    fn scrub(activation: &mut Option<pb::Activation>, talking_points: &[String]) {
        if let Some(a) = activation.as_mut() {
            if let Some(context) = a.context.as_mut() {
                context.erase_personal_data();
            }
            if let Some(plan) = a.plan.as_mut() {
                plan.talking_points = talking_points.to_vec();
            }
        }
    }
    macro_rules! redact {
        ($($event:ident),*) => {
            $(
                if type_name == pb::$event::full_name() {
                    let mut event = pb::$event::decode(payload).ok()?;
                    scrub(&mut event.activation, talking_points);
                    return Some(event.encode_to_vec());
                }
            )*
        };
    }
    redact!(
        LeadAssigned,
        LeadActivated,
        SlaBreached,
        EscalationRaised,
        LeadReassigned,
        LeadDoNotContact
    );
    None
}
