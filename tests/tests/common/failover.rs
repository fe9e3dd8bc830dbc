//! Losing part of the lattice under load and getting it back: what the failover tests (a host,
//! issue 6; a whole machine, issue 19) share. The load runs throughout; `lose` takes the part
//! away and returns only once it is gone (its processes exited, their connections closed), so a
//! request sent after that instant never met it.
use std::time::Duration;

use super::load::{Load, Outcome};

/// What happened to the load around a loss and a return.
pub struct Failover {
    pub outcomes: Vec<Outcome>,
    pub ran: Duration,
    /// When the lost part had gone (load time).
    pub lost_at: Duration,
    /// From the loss to the lattice whole again on what remained (`xtask settle`).
    pub recovered_in: Duration,
    /// When the part came back (load time), and how long until it was whole again.
    pub returned_at: Duration,
    pub respread_in: Duration,
}

/// Runs `lose` (which returns a name for the lost part), waits until the lattice is whole on what
/// remains and answers again, runs `bring_back` with that name, and waits until it is whole again.
pub fn lose_and_return(
    load: Load,
    lose: impl FnOnce() -> String,
    bring_back: impl FnOnce(&str),
) -> (String, Failover) {
    load.wait_for_answer("the platform to be ready", Duration::ZERO, Outcome::ok);
    let lost = lose();
    let lost_at = load.now();
    super::xtask(&["settle"]);
    let recovered_in = load.now() - lost_at;
    let after = load.now() + Duration::from_secs(2);
    load.wait_for_answer("answers after recovery", after, Outcome::ok);

    let returned_at = load.now();
    bring_back(&lost);
    super::xtask(&["settle"]);
    let respread_in = load.now() - returned_at;
    let (outcomes, ran) = load.finish();
    (
        lost,
        Failover {
            outcomes,
            ran,
            lost_at,
            recovered_in,
            returned_at,
            respread_in,
        },
    )
}

impl Failover {
    /// Requests sent before the part came back, and after.
    pub fn while_lost(&self) -> Vec<&Outcome> {
        self.outcomes
            .iter()
            .filter(|o| o.sent < self.returned_at)
            .collect()
    }

    pub fn after_return(&self) -> Vec<&Outcome> {
        self.outcomes
            .iter()
            .filter(|o| o.sent >= self.returned_at)
            .collect()
    }

    /// The one-line figures: requests and failures while lost and after the return, times.
    pub fn figures(&self, what: &str) -> String {
        let (lost, back) = (self.while_lost(), self.after_return());
        format!(
            "{} requests in {:.1} s; {what} lost: {} requests, {} failed, every instance back on the survivors and wadm Deployed {:.1} s later; back: {} requests, {} failed, spread again in {:.1} s",
            self.outcomes.len(),
            self.ran.as_secs_f64(),
            lost.len(),
            failed(&lost).len(),
            self.recovered_in.as_secs_f64(),
            back.len(),
            failed(&back).len(),
            self.respread_in.as_secs_f64()
        )
    }

    /// Only requests in flight when the part went may fail: with `clients` sending one request
    /// at a time, at most that many, and none sent after it was gone (half a second of slack
    /// for a request that had left its client but not yet reached the gateway).
    pub fn assert_only_in_flight_failed(&self, clients: usize) {
        let lost = self.while_lost();
        let late: Vec<&&Outcome> = lost
            .iter()
            .filter(|o| !o.ok() && o.sent > self.lost_at + Duration::from_millis(500))
            .collect();
        assert!(
            late.is_empty(),
            "requests sent after the loss (complete by {:?}) failed: {late:?}",
            self.lost_at
        );
        let failed = failed(&lost).len();
        assert!(
            failed <= clients,
            "more failures than requests in flight: {failed}"
        );
    }
}

pub fn failed<'a>(outcomes: &[&'a Outcome]) -> Vec<&'a Outcome> {
    outcomes.iter().copied().filter(|o| !o.ok()).collect()
}
