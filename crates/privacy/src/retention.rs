//! Retention: customers whose tickets are all over, the last one longer ago than the
//! region's period, lose their personal data (their key is purged). A customer with an
//! open ticket keeps it: that ticket needs the key.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use helpline_eventstore::CustomerId;

use crate::error::PrivacyError;
use crate::rights::{Privacy, Reason};
use crate::scan::{TicketRecord, scan};

/// What retention decides for each customer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetentionPlan {
    /// Customers to erase, with their tickets.
    pub purge: BTreeMap<CustomerId, Vec<TicketRecord>>,
    /// Customers kept because one of their tickets is open.
    pub kept_open: usize,
    /// Customers kept because their last ticket ended within the period.
    pub kept_recent: usize,
    /// Customers erased before (every ticket carries `CustomerErased`).
    pub already_erased: usize,
}

/// Plans a retention run over `records` at `now`: pure, so its rule reads in tests.
pub fn plan(records: Vec<TicketRecord>, now: SystemTime, period: Duration) -> RetentionPlan {
    let mut plan = RetentionPlan::default();
    let cutoff = now.checked_sub(period).unwrap_or(SystemTime::UNIX_EPOCH);
    for (customer, tickets) in by_customer(records) {
        if tickets.iter().all(|t| t.erased) {
            plan.already_erased += 1;
        } else if tickets.iter().any(|t| !t.over && !t.erased) {
            plan.kept_open += 1;
        } else if tickets.iter().any(|t| t.last_event_at > cutoff) {
            plan.kept_recent += 1;
        } else {
            plan.purge.insert(customer, tickets);
        }
    }
    plan
}

/// Tickets per customer; tickets without one are left out.
fn by_customer(records: Vec<TicketRecord>) -> BTreeMap<CustomerId, Vec<TicketRecord>> {
    let mut customers: BTreeMap<CustomerId, Vec<TicketRecord>> = BTreeMap::new();
    for record in records {
        if let Some(customer) = record.customer.clone() {
            customers.entry(customer).or_default().push(record);
        }
    }
    customers
}

/// What one retention run did; logged, returned and counted in metrics.
#[derive(Clone, Debug, PartialEq)]
pub struct RetentionRun {
    pub tickets_scanned: usize,
    pub customers_purged: usize,
    pub kept_open: usize,
    pub kept_recent: usize,
    pub already_erased: usize,
    pub seconds: f64,
}

impl std::fmt::Display for RetentionRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "retention: {} tickets scanned, {} customers purged, kept {} with an open ticket and {} within the period, {} erased before; {:.2} s",
            self.tickets_scanned,
            self.customers_purged,
            self.kept_open,
            self.kept_recent,
            self.already_erased,
            self.seconds
        )
    }
}

impl Privacy {
    /// Runs retention once: erases every customer [`plan`] says.
    pub async fn retention(&self, period: Duration) -> Result<RetentionRun, PrivacyError> {
        let started = Instant::now();
        let records = scan(self.store()).await?;
        let tickets_scanned = records.len();
        let plan = plan(records, SystemTime::now(), period);
        for (customer, tickets) in &plan.purge {
            self.erase_tickets(customer, tickets, Reason::Retention)
                .await?;
        }
        let run = RetentionRun {
            tickets_scanned,
            customers_purged: plan.purge.len(),
            kept_open: plan.kept_open,
            kept_recent: plan.kept_recent,
            already_erased: plan.already_erased,
            seconds: started.elapsed().as_secs_f64(),
        };
        helpline_telemetry::metrics::increment(
            "helpline_retention_runs_total",
            "Retention runs completed.",
            &[],
        );
        helpline_telemetry::metrics::observe(
            "helpline_retention_run_seconds",
            "How long a retention run took.",
            &[],
            run.seconds,
        );
        tracing::info!(
            tickets_scanned = run.tickets_scanned,
            customers_purged = run.customers_purged,
            kept_open = run.kept_open,
            kept_recent = run.kept_recent,
            already_erased = run.already_erased,
            seconds = run.seconds,
            "retention run"
        );
        Ok(run)
    }
}

#[cfg(test)]
mod tests {
    use helpline_domain::{Channel, TicketId};
    use helpline_eventstore::MasterKey;
    use uuid::Uuid;

    use super::*;

    const DAY: Duration = Duration::from_secs(24 * 3600);

    fn customer(contact: &str) -> CustomerId {
        MasterKey::development().customer_id(Channel::WhatsApp, contact)
    }

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + 1000 * DAY
    }

    fn ticket(who: &str, days_ago: u32, over: bool) -> TicketRecord {
        TicketRecord {
            ticket: TicketId(Uuid::now_v7()),
            customer: Some(customer(who)),
            last_event_at: now() - DAY * days_ago,
            over,
            erased: false,
        }
    }

    #[test]
    fn a_customer_whose_tickets_all_ended_before_the_period_is_purged() {
        let plan = plan(
            vec![ticket("anna", 400, true), ticket("anna", 380, true)],
            now(),
            365 * DAY,
        );
        assert_eq!(plan.purge.len(), 1);
        assert_eq!(
            plan.purge[&customer("anna")].len(),
            2,
            "every ticket is erased"
        );
    }

    #[test]
    fn an_open_ticket_keeps_the_key_however_old_the_closed_ones_are() {
        let plan = plan(
            vec![ticket("anna", 900, true), ticket("anna", 500, false)],
            now(),
            365 * DAY,
        );
        assert!(plan.purge.is_empty());
        assert_eq!(plan.kept_open, 1);
    }

    #[test]
    fn a_ticket_that_ended_within_the_period_keeps_the_key() {
        let plan = plan(
            vec![ticket("anna", 900, true), ticket("anna", 10, true)],
            now(),
            365 * DAY,
        );
        assert!(plan.purge.is_empty());
        assert_eq!(plan.kept_recent, 1);
    }

    #[test]
    fn customers_are_planned_apart_and_erased_ones_are_left_alone() {
        let mut erased = ticket("carla", 900, true);
        erased.erased = true;
        let unnamed = TicketRecord {
            customer: None,
            ..ticket("nobody", 900, true)
        };
        let plan = plan(
            vec![
                ticket("anna", 400, true),
                ticket("ben", 400, false),
                erased,
                unnamed,
            ],
            now(),
            365 * DAY,
        );
        assert_eq!(plan.purge.keys().collect::<Vec<_>>(), [&customer("anna")]);
        assert_eq!((plan.kept_open, plan.already_erased), (1, 1));
    }
}
