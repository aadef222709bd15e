//! Live events from every writer: a stream delivers each event committed to
//! the state directory — by this manager, another manager in this process,
//! or another process — exactly once, in id order; resumes after an id with
//! no gap; and answers `Closed`, distinct from silence, once closed.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod support;

use std::io::{BufRead, BufReader};
use std::os::fd::AsFd;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{boot, open};
use vman_core::{ErrorKind, Event, EventStream, NetworkSpec, TemplateSpec, VmSpec};

const CHILD_DIR: &str = "VMAN_TEST_EVENTS_DIR";
/// Long enough for anything on a loaded 2-core host; a wait that runs out
/// fails the test rather than hanging it.
const WAIT: Duration = Duration::from_secs(60);

fn readable(stream: &EventStream) -> bool {
    let mut fds = [nix::poll::PollFd::new(stream.as_fd(), nix::poll::PollFlags::POLLIN)];
    nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO).unwrap() == 1
}

/// Reads until an event matching `last` arrives; returns all read.
fn read_until(stream: &EventStream, last: impl Fn(&Event) -> bool) -> Vec<Event> {
    let mut got = Vec::new();
    loop {
        let event = stream.next(WAIT).unwrap().expect("an event within the wait");
        let done = last(&event);
        got.push(event);
        if done {
            return got;
        }
    }
}

fn ids(events: &[Event]) -> Vec<i64> {
    events.iter().map(|e| e.id).collect()
}

/// Not a test on its own: process B of
/// `every_writer_s_events_reach_a_subscriber_once_and_in_order`. It changes
/// templates, networks and VMs, starts a VM whose death its own watcher
/// settles, and finishes once its stdin closes.
#[test]
fn events_writer_child() {
    let Ok(dir) = std::env::var(CHILD_DIR) else { return };
    let vman = open(Path::new(&dir));
    for i in 0..5 {
        vman.create_template(&TemplateSpec::new(format!("b-t{i}"), 1, 256, 1)).unwrap();
    }
    vman.create_network(&NetworkSpec::new("b-net", 200, "10.200.0.0/24")).unwrap();
    for i in 0..3 {
        vman.create_vm(&VmSpec::new(format!("b-vm{i}"), "b-t0").nic("b-net")).unwrap();
    }
    vman.delete_vm("b-vm1", false).unwrap();
    vman.delete_template("b-t4").unwrap();
    vman.create_vm(&VmSpec::new("b-doomed", "b-t0").boot(boot("").unwrap())).unwrap();
    println!("STARTED {}", vman.start("b-doomed").unwrap().pid.unwrap());
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap(); // EOF: the parent saw the death
    vman.delete_vm("b-doomed", false).unwrap();
    for i in [0, 2] {
        vman.delete_vm(&format!("b-vm{i}"), false).unwrap();
    }
    vman.delete_network("b-net").unwrap();
    println!("WRITER-DONE");
}

#[test]
fn every_writer_s_events_reach_a_subscriber_once_and_in_order() {
    if boot("").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = support::Cleanup(dir.path().to_path_buf());
    // Both of A's managers are open before B starts its VM, so neither
    // adopts it: its death can only be settled by B's watcher.
    let a = open(dir.path());
    let a2 = open(dir.path());
    a.create_template(&TemplateSpec::new("a-before", 1, 256, 1)).unwrap();
    let before = a.recent_events(1).unwrap()[0].id;
    let stream = a.subscribe().unwrap();

    let mut b = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "events_writer_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Meanwhile a second manager in this process writes from another thread.
    let a2_writer = std::thread::spawn(move || {
        for i in 0..20 {
            a2.create_template(&TemplateSpec::new(format!("a2-t{i}"), 1, 256, 1)).unwrap();
            if i % 2 == 0 {
                a2.delete_template(&format!("a2-t{i}")).unwrap();
            }
        }
        a2
    });

    let mut b_out = BufReader::new(b.stdout.take().unwrap());
    let qemu_pid: i32 = loop {
        let mut line = String::new();
        assert!(b_out.read_line(&mut line).unwrap() > 0, "process B died early");
        // (libtest may print "test … " on the same line first.)
        if let Some(pid) = line.split("STARTED ").nth(1) {
            break pid.trim().parse().unwrap();
        }
    };
    // SAFETY: kill(2) on the QEMU that B just started and reported.
    assert_eq!(unsafe { libc::kill(qemu_pid, libc::SIGKILL) }, 0);
    let mut got = read_until(&stream, |e| e.object_name == "b-doomed" && e.details["to"] == "error");
    let death = got.last().unwrap();
    assert_eq!(death.pid, b.id(), "settled by B's watcher: {death:?}");
    assert_eq!(death.details["pid"], qemu_pid);
    assert_eq!(death.details["from"], "running");

    drop(b.stdin.take()); // B finishes its changes and exits
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut b_out, &mut rest).unwrap();
    assert!(rest.contains("WRITER-DONE"), "{rest}");
    assert!(b.wait().unwrap().success());
    let a2 = a2_writer.join().unwrap();
    a.create_template(&TemplateSpec::new("a-last", 1, 256, 1)).unwrap();
    got.extend(read_until(&stream, |e| e.object_name == "a-last"));
    assert_eq!(stream.next(Duration::from_millis(200)).unwrap(), None, "nothing more");

    // Exactly the history after the subscription: every event once, in order.
    let history: Vec<Event> = a.recent_events(10_000).unwrap().into_iter().filter(|e| e.id > before).collect();
    assert_eq!(ids(&got), ids(&history));
    assert_eq!(got, history);
    let writers: std::collections::BTreeSet<u32> = got.iter().map(|e| e.pid).collect();
    assert_eq!(writers, [std::process::id(), b.id()].into_iter().collect(), "both processes wrote");
    assert_eq!(got.iter().filter(|e| e.object_name.starts_with("a2-t")).count(), 30, "the second manager's 20 creates and 10 deletes");
    assert!(got.iter().any(|e| e.object_name == "b-net" && e.action == "deleted"));

    // A consumer that handled events up to `mid` and restarts resumes with
    // exactly what it missed, then live events.
    let mid = got[got.len() / 2].id;
    drop(stream);
    a2.create_template(&TemplateSpec::new("a-missed", 1, 256, 1)).unwrap();
    let resumed = a.subscribe_after(mid).unwrap();
    let replay = read_until(&resumed, |e| e.object_name == "a-missed");
    let missed: Vec<Event> = a.recent_events(10_000).unwrap().into_iter().filter(|e| e.id > mid).collect();
    assert_eq!(replay, missed);
    a2.delete_template("a-missed").unwrap();
    let live = resumed.next(WAIT).unwrap().unwrap();
    assert_eq!((live.object_name.as_str(), live.action.as_str(), live.id), ("a-missed", "deleted", missed.last().unwrap().id + 1));
    assert_eq!(resumed.next(Duration::from_millis(200)).unwrap(), None);
}

#[test]
fn a_stream_starts_after_the_newest_event_and_resumes_after_any_existing_id() {
    let dir = tempfile::tempdir().unwrap();
    let vman = open(dir.path());
    for i in 0..3 {
        vman.create_template(&TemplateSpec::new(format!("t{i}"), 1, 256, 1)).unwrap();
    }
    let newest = vman.recent_events(1).unwrap()[0].id;
    let live = vman.subscribe().unwrap();
    assert_eq!(live.next(Duration::ZERO).unwrap(), None, "the past is not replayed");
    let all = vman.subscribe_after(0).unwrap();
    let replay: Vec<i64> = std::iter::from_fn(|| all.next(Duration::ZERO).unwrap()).map(|e| e.id).collect();
    assert_eq!(replay, (1..=newest).collect::<Vec<_>>());
    // An id that never existed here belongs to another store.
    for bad in [-1, newest + 1] {
        assert_eq!(vman.subscribe_after(bad).unwrap_err().kind(), ErrorKind::InvalidArgument, "{bad}");
    }
    let at_newest = vman.subscribe_after(newest).unwrap();
    vman.delete_template("t0").unwrap();
    for stream in [&live, &all, &at_newest] {
        assert_eq!(stream.next(WAIT).unwrap().unwrap().id, newest + 1);
    }
}

#[test]
fn dropping_the_manager_closes_its_streams_even_mid_wait() {
    let dir = tempfile::tempdir().unwrap();
    let vman = open(dir.path());
    let other = open(dir.path());
    let stream = vman.subscribe().unwrap();
    other.create_template(&TemplateSpec::new("t", 1, 256, 1)).unwrap();
    assert_eq!(stream.next(WAIT).unwrap().unwrap().object_name, "t");
    assert!(!stream.is_closed());
    std::thread::scope(|s| {
        let waiter = s.spawn(|| stream.next(WAIT));
        std::thread::sleep(Duration::from_millis(100)); // let it wait (either way it must answer Closed)
        drop(vman);
        // Not Ok(None) after the whole wait: the drop woke it.
        assert_eq!(waiter.join().unwrap().unwrap_err().kind(), ErrorKind::Closed);
    });
    // Closed stays closed, even with new events in the table, and the
    // descriptor stays readable so a poll loop does not hang.
    other.create_template(&TemplateSpec::new("after", 1, 256, 1)).unwrap();
    let err = stream.next(Duration::ZERO).unwrap_err();
    assert_eq!((err.kind(), err.to_string().as_str()), (ErrorKind::Closed, "Manager is closed"));
    assert!(stream.is_closed() && readable(&stream));
    // The other manager is unaffected.
    assert_eq!(other.subscribe_after(0).unwrap().next(Duration::ZERO).unwrap().unwrap().object_name, "t");
}

#[test]
fn a_closed_stream_answers_closed_even_to_a_waiting_thread() {
    let dir = tempfile::tempdir().unwrap();
    let vman = open(dir.path());
    let stream = vman.subscribe().unwrap();
    std::thread::scope(|s| {
        let waiter = s.spawn(|| stream.next(WAIT));
        std::thread::sleep(Duration::from_millis(100));
        stream.close();
        assert_eq!(waiter.join().unwrap().unwrap_err().kind(), ErrorKind::Closed);
    });
    stream.close(); // idempotent
    vman.create_template(&TemplateSpec::new("t", 1, 256, 1)).unwrap();
    let err = stream.next(WAIT).unwrap_err();
    assert_eq!((err.kind(), err.to_string().as_str()), (ErrorKind::Closed, "Event stream is closed"));
    assert!(readable(&stream));
    // Other streams of the manager are not closed by it.
    assert_eq!(vman.subscribe_after(0).unwrap().next(Duration::ZERO).unwrap().unwrap().object_name, "t");
}

#[test]
fn the_descriptor_is_readable_exactly_while_next_has_something() {
    let dir = tempfile::tempdir().unwrap();
    let vman = open(dir.path());
    let stream = vman.subscribe().unwrap();
    assert!(!readable(&stream));
    // More events than the stream reads from the table at once (256).
    const N: usize = 300;
    for i in 0..N {
        vman.create_template(&TemplateSpec::new(format!("t{i}"), 1, 256, 1)).unwrap();
    }
    for i in 0..N {
        assert!(readable(&stream), "readable while event {i} is undelivered");
        assert_eq!(stream.next(Duration::ZERO).unwrap().unwrap().object_name, format!("t{i}"));
    }
    assert!(!readable(&stream), "not readable once all is delivered");
    assert_eq!(stream.next(Duration::ZERO).unwrap(), None);
    // A resumed stream with history to replay is readable from the start.
    assert!(readable(&vman.subscribe_after(0).unwrap()));
    vman.delete_template("t0").unwrap();
    assert!(readable(&stream));
}

/// A stream holds its manager weakly: dropping the manager closes the
/// stream at once, with no read or wait in between.
#[test]
fn a_stream_does_not_keep_its_manager_alive() {
    let dir = tempfile::tempdir().unwrap();
    let vman = open(dir.path());
    let stream = vman.subscribe().unwrap();
    drop(vman);
    assert!(stream.is_closed());
    open(dir.path()).create_template(&TemplateSpec::new("t", 1, 256, 1)).unwrap();
    assert_eq!(stream.next(Duration::ZERO).unwrap_err().kind(), ErrorKind::Closed);
}

#[test]
fn a_stream_can_be_shared_between_threads() {
    fn check<T: Send + Sync>() {}
    check::<EventStream>();
}
