//! A team of spinning threads for the duration of one pass of the hand-written
//! encoder, so that its ~45 parallel sections (7 per layer) do not each wake
//! a sleeping rayon worker.
//!
//! Between two matmuls the calling thread runs short serial work (layer norms,
//! copies): long enough for rayon's idle workers to go to sleep, so every
//! `par_iter` paid a futex wake-up, in a VM an inter-processor interrupt
//! through the hypervisor (`perf` of the 32-token forward: ~13% of the samples
//! in the scheduler). Here the other threads of the pool join once per pass,
//! as rayon jobs, and spin on an atomic ticket; [`run_parallel`] hands them the
//! tiles of one section.
//!
//! A spinning partner holds a pool thread, so nothing may wait for one: a
//! section without a partner falls back to rayon (the caller can always finish
//! it alone), and a partner that found no work for [`IDLE_LEAVE`] leaves the
//! pool thread to whoever else needs it (another pass, or this pass's own
//! `par_iter` from outside the pool, which waits for a free worker); the next
//! section then asks for a new one.

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long a partner spins without work before it gives its pool thread
/// back: longer than most serial stretches inside a pass (0.5 ms and 5 ms
/// measured alike on saliency at 8–128 tokens), short enough that a pass
/// waiting for a pool thread is not held up for long.
const IDLE_LEAVE: Duration = Duration::from_millis(1);

/// One section: calls of `f`, published through [`Team::ticket`].
struct Job<'a> {
    f: &'a (dyn Fn(usize) + Sync),
}

/// Shared state of one pass. The ticket packs the section's serial number
/// (high 32 bits), its task count (next 16) and the next unclaimed index (low
/// 16): a claim is one compare-and-swap that fails once the caller has moved
/// on, so a partner can never run a task of a section it did not read.
struct Team {
    ticket: AtomicU64,
    job: AtomicPtr<Job<'static>>,
    done: AtomicUsize,
    /// Partners spinning now.
    partners: AtomicUsize,
    /// Partners asked for that have not started yet.
    pending: AtomicUsize,
    stop: AtomicBool,
    panicked: AtomicBool,
}

thread_local! {
    /// The team of the pass this thread is running, if any.
    static CURRENT: Cell<*const Team> = const { Cell::new(std::ptr::null()) };
}

const INDEX_BITS: u32 = 16;
const COUNT_MASK: u64 = (1 << INDEX_BITS) - 1;

fn pack(serial: u64, count: u64, index: u64) -> u64 {
    (serial << 32) | (count << INDEX_BITS) | index
}

fn unpack(t: u64) -> (u64, u64, u64) {
    (t >> 32, (t >> INDEX_BITS) & COUNT_MASK, t & COUNT_MASK)
}

/// `EXPNET_TEAM=0` turns teams off (plain rayon sections), for measuring.
fn enabled() -> bool {
    static ENABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ENABLED.get_or_init(|| std::env::var("EXPNET_TEAM").map_or(true, |v| v != "0"))
}

/// Runs `f` with the other threads of the rayon pool spinning beside it as
/// one team, which [`run_parallel`] then uses. A plain call of `f` on one
/// thread, inside a team already, or where kernels must stay on the calling
/// thread ([`super::linear::serial`]).
pub(in crate::model) fn with_team<T>(f: impl FnOnce() -> T) -> T {
    // `parallel` is false on one thread and under `serial`.
    if !enabled() || !CURRENT.with(Cell::get).is_null() || !super::linear::parallel(usize::MAX) {
        return f();
    }
    let threads = rayon::current_num_threads();
    let team = Arc::new(Team {
        ticket: AtomicU64::new(0),
        job: AtomicPtr::new(std::ptr::null_mut()),
        done: AtomicUsize::new(0),
        partners: AtomicUsize::new(0),
        pending: AtomicUsize::new(0),
        stop: AtomicBool::new(false),
        panicked: AtomicBool::new(false),
    });
    for _ in 1..threads {
        team.ask_for_partner();
    }
    // Ends the team even if `f` unwinds; partners that start later see `stop`.
    struct Leave(Arc<Team>);
    impl Drop for Leave {
        fn drop(&mut self) {
            CURRENT.with(|c| c.set(std::ptr::null()));
            self.0.stop.store(true, Ordering::Release);
        }
    }
    CURRENT.with(|c| c.set(Arc::as_ptr(&team)));
    let _leave = Leave(team);
    f()
}

/// `f(0..count)` on the current pass's team when it has a partner, else on
/// rayon's pool (and then, inside a pass, a new partner is asked for: after
/// the section, so that it does not take the pool thread the section needs).
pub(super) fn run_parallel(count: usize, f: &(dyn Fn(usize) + Sync)) {
    use rayon::prelude::*;
    let team = CURRENT.with(Cell::get);
    if team.is_null() || count as u64 > COUNT_MASK {
        return (0..count).into_par_iter().for_each(f);
    }
    // SAFETY: CURRENT points into the Arc that the enclosing `with_team`
    // holds until it clears CURRENT.
    let team_ref = unsafe { &*team };
    if team_ref.partners.load(Ordering::Acquire) > 0 {
        return team_ref.run(count, f);
    }
    (0..count).into_par_iter().for_each(f);
    if team_ref.pending.load(Ordering::Acquire) == 0 {
        // SAFETY: as above; one more strong count for the clone.
        let team = unsafe {
            Arc::increment_strong_count(team);
            Arc::from_raw(team)
        };
        team.ask_for_partner();
    }
}

impl Team {
    /// Queues one partner on the rayon pool (it joins when a thread is free).
    fn ask_for_partner(self: &Arc<Self>) {
        self.pending.fetch_add(1, Ordering::AcqRel);
        let team = Arc::clone(self);
        rayon::spawn(move || team.partner());
    }

    fn run(&self, count: usize, f: &(dyn Fn(usize) + Sync)) {
        let job = Job { f };
        // SAFETY (lifetime): partners dereference the job only after claiming
        // one of its indices, and this function returns only once every index
        // has finished, so the borrow outlives every use.
        let ptr = &job as *const Job as *mut Job<'static>;
        self.done.store(0, Ordering::Relaxed);
        self.job.store(ptr, Ordering::Relaxed);
        let serial = (unpack(self.ticket.load(Ordering::Relaxed)).0 + 1) & 0xffff_ffff;
        self.ticket.store(pack(serial, count as u64, 0), Ordering::Release);
        let mut finished = 0;
        let mut own_panic = None;
        while let Some(i) = self.claim(serial) {
            // Caught so that the job outlives the partners' tasks even then.
            if let Err(p) = catch_unwind(AssertUnwindSafe(|| f(i))) {
                own_panic.get_or_insert(p);
            }
            finished += 1;
        }
        self.done.fetch_add(finished, Ordering::AcqRel);
        while self.done.load(Ordering::Acquire) < count {
            std::hint::spin_loop();
        }
        if let Some(p) = own_panic {
            std::panic::resume_unwind(p);
        }
        if self.panicked.swap(false, Ordering::AcqRel) {
            panic!("a kernel task panicked on a partner thread");
        }
    }

    /// Claims the next index of section `serial`, if any is left.
    fn claim(&self, serial: u64) -> Option<usize> {
        let mut t = self.ticket.load(Ordering::Acquire);
        loop {
            let (s, count, index) = unpack(t);
            if s != serial || index >= count {
                return None;
            }
            match self.ticket.compare_exchange_weak(t, t + 1, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Some(index as usize),
                Err(now) => t = now,
            }
        }
    }

    /// A partner's loop: waits for a section and helps with it, until the
    /// pass ends or no section came for [`IDLE_LEAVE`].
    fn partner(&self) {
        // A pool thread running a pass of its own (this one's or another's)
        // can pop a partner job while it waits in a `join`: spinning there
        // would stall that pass, so it declines.
        if !CURRENT.with(Cell::get).is_null() {
            self.pending.fetch_sub(1, Ordering::AcqRel);
            return;
        }
        self.partners.fetch_add(1, Ordering::AcqRel);
        self.pending.fetch_sub(1, Ordering::AcqRel);
        // Serial 0 is never a section's: a section open when the partner
        // joins is helped with too.
        let mut seen = 0;
        let mut idle_since = Instant::now();
        let mut spins = 0u32;
        while !self.stop.load(Ordering::Acquire) {
            let t = self.ticket.load(Ordering::Acquire);
            let (serial, count, index) = unpack(t);
            if serial == seen || index >= count {
                seen = serial;
                spins = spins.wrapping_add(1);
                if spins.is_multiple_of(256) && idle_since.elapsed() > IDLE_LEAVE {
                    break;
                }
                std::hint::spin_loop();
                continue;
            }
            // Read before claiming: a successful claim proves the section was
            // still open, so this pointer is its job (see `run`).
            let job = self.job.load(Ordering::Acquire);
            let mut finished = 0;
            while let Some(i) = self.claim(serial) {
                // SAFETY: see above; the caller waits for this index.
                let f = unsafe { (*job).f };
                if catch_unwind(AssertUnwindSafe(|| f(i))).is_err() {
                    self.panicked.store(true, Ordering::Release);
                }
                finished += 1;
            }
            seen = serial;
            self.done.fetch_add(finished, Ordering::AcqRel);
            idle_since = Instant::now();
        }
        self.partners.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Partners spinning in the calling thread's pass now (`None` outside one).
#[cfg(test)]
fn partners_now() -> Option<usize> {
    let team = CURRENT.with(Cell::get);
    // SAFETY: as in `run_parallel`.
    (!team.is_null()).then(|| unsafe { &*team }.partners.load(Ordering::Acquire))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rayon::prelude::*;

    fn pool(threads: usize) -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap()
    }

    /// Waits (at most 30 s) until the pass has a partner.
    fn wait_for_partner() -> bool {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if partners_now().unwrap_or(0) > 0 {
                return true;
            }
            // A section without a partner asks for one.
            run_parallel(2, &|_| {});
            std::thread::yield_now();
        }
        false
    }

    #[test]
    fn every_task_of_every_section_runs_once() {
        pool(3).install(|| {
            with_team(|| {
                assert!(wait_for_partner(), "no partner joined within 30 s");
                let mut on_team = 0;
                for section in 0..2_000usize {
                    let count = 1 + section % 7;
                    let hits: Vec<AtomicUsize> = (0..count).map(|_| AtomicUsize::new(0)).collect();
                    on_team += usize::from(partners_now().unwrap_or(0) > 0);
                    run_parallel(count, &|i| {
                        hits[i].fetch_add(1, Ordering::Relaxed);
                    });
                    assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1), "section {section}");
                }
                // Some sections ran with partners (else this tests only rayon);
                // how many depends on the machine's load (a partner preempted
                // for over IDLE_LEAVE leaves).
                assert!(on_team > 0, "no section of 2,000 had a partner");
            });
        });
    }

    #[test]
    fn partners_take_work() {
        pool(2).install(|| {
            with_team(|| {
                assert!(wait_for_partner(), "no partner joined within 30 s");
                let main = std::thread::current().id();
                let ids = std::sync::Mutex::new(Vec::new());
                // Long tasks, so the partner claims some before the caller is done.
                run_parallel(8, &|_| {
                    std::thread::sleep(Duration::from_millis(2));
                    ids.lock().unwrap().push(std::thread::current().id());
                });
                let ids = ids.into_inner().unwrap();
                assert_eq!(ids.len(), 8);
                assert!(ids.iter().any(|&id| id != main), "no task ran on the partner");
            });
        });
    }

    /// Passes from threads outside the pool, more of them than the pool has
    /// threads, each also waiting on plain rayon work: every pool thread can
    /// be a partner of some pass while a caller waits for a free one, so this
    /// finishes only because idle partners leave.
    #[test]
    fn concurrent_passes_from_outside_the_pool_finish() {
        let callers = rayon::current_num_threads() + 1;
        let (tx, rx) = std::sync::mpsc::channel();
        for c in 0..callers {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let total = with_team(|| {
                    let mut total = 0usize;
                    for section in 0..300usize {
                        let count = 2 + section % 3;
                        let sum = AtomicUsize::new(0);
                        run_parallel(count, &|i| {
                            sum.fetch_add(i + 1, Ordering::Relaxed);
                        });
                        total += sum.into_inner();
                        // Plain rayon work from outside the pool waits for a pool thread.
                        total += (0..16usize).into_par_iter().map(|i| i % 2).sum::<usize>() - 8;
                    }
                    total
                });
                tx.send((c, total)).unwrap();
            });
        }
        drop(tx);
        let want: usize = (0..300usize).map(|s| (2 + s % 3) * (3 + s % 3) / 2).sum();
        for _ in 0..callers {
            let (c, total) = rx.recv_timeout(Duration::from_secs(120)).expect("a pass never finished: deadlock");
            assert_eq!(total, want, "caller {c}");
        }
    }

    /// Passes on pool threads side by side: a caller that pops another
    /// pass's partner job while it waits must not spin in it.
    #[test]
    fn concurrent_passes_inside_the_pool_finish() {
        let want: usize = (0..500usize).map(|s| (2 + s % 3) * (3 + s % 3) / 2).sum();
        let totals: Vec<usize> = pool(2).install(|| {
            (0..6).into_par_iter().map(|_| {
                with_team(|| {
                    (0..500usize)
                        .map(|section| {
                            let count = 2 + section % 3;
                            let sum = AtomicUsize::new(0);
                            run_parallel(count, &|i| {
                                sum.fetch_add(i + 1, Ordering::Relaxed);
                            });
                            sum.into_inner()
                        })
                        .sum()
                })
            })
            .collect()
        });
        assert!(totals.iter().all(|&t| t == want), "{totals:?}");
    }

    #[test]
    fn no_team_on_one_thread_or_when_serial() {
        pool(1).install(|| with_team(|| assert_eq!(partners_now(), None)));
        pool(2).install(|| super::super::linear::serial(|| with_team(|| assert_eq!(partners_now(), None))));
        pool(2).install(|| with_team(|| with_team(|| assert!(partners_now().is_some()))));
        assert_eq!(partners_now(), None);
    }

    #[test]
    fn a_panicking_task_panics_the_pass() {
        let r = std::panic::catch_unwind(|| {
            pool(2).install(|| {
                with_team(|| {
                    assert!(wait_for_partner(), "no partner joined within 30 s");
                    run_parallel(2, &|i| assert!(i != 1, "boom"));
                })
            })
        });
        // Either the caller ran index 1 itself (the assert's panic) or the
        // partner did (the team's panic): both must reach the caller.
        let message = r.expect_err("the pass returned although a task panicked");
        let text = message.downcast_ref::<String>().cloned().or_else(|| message.downcast_ref::<&str>().map(|s| s.to_string()));
        assert!(text.as_ref().is_some_and(|t| t.contains("boom") || t.contains("partner thread")), "{text:?}");
    }
}
