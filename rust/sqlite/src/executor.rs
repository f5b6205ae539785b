//! The thread that runs groups of native operations. The event loop hands it a group and goes
//! on running Python; the thread runs the group's transaction (SQLite work and the fsync)
//! without the interpreter, queues the results, and writes one byte to a socket the event loop
//! watches, which then collects them. One group at a time: the store is shared with the event
//! loop's thread, which uses it between groups.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use crate::error::{StoreError, StoreResult};
use crate::group::run_group;
use crate::open::Store;
use crate::operation::{Output, Request};

/// A finished group: its ticket and each operation's result.
pub type Finished = (u64, Vec<StoreResult<Output>>);

type Shared<T> = Arc<Mutex<T>>;
/// A group for the thread: its ticket and its operations.
type Job = (u64, Vec<Request>);

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while the lock was held was caught and reported; the data is still usable.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub struct Executor {
    store: Shared<Option<Store>>,
    jobs: Mutex<Option<Sender<Job>>>,
    finished: Shared<VecDeque<Finished>>,
    ready: ReadySocket,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// The process that opened the store: a forked child has neither its thread nor a
    /// connection it may use (SQLite connections do not survive fork).
    process: u32,
}

impl Executor {
    pub fn new(store: Store) -> std::io::Result<Self> {
        let store = Arc::new(Mutex::new(Some(store)));
        let finished: Shared<VecDeque<Finished>> = Arc::default();
        let (ready, mut signal) = socket_pair()?;
        ready.set_nonblocking(true)?;
        let (sender, receiver) = channel::<Job>();
        let thread = {
            let store = Arc::clone(&store);
            let finished = Arc::clone(&finished);
            std::thread::Builder::new()
                .name("mainspring-sqlite".into())
                .spawn(move || {
                    for (ticket, requests) in receiver {
                        let results = run_guarded(&store, &requests);
                        lock(&finished).push_back((ticket, results));
                        // If the event loop is gone nobody collects; nothing else to do.
                        let _ = signal.write_all(&[1]);
                    }
                })?
        };
        Ok(Executor {
            store,
            jobs: Mutex::new(Some(sender)),
            finished,
            ready,
            thread: Mutex::new(Some(thread)),
            process: std::process::id(),
        })
    }

    /// The socket that becomes readable when a group finished (a file descriptor; on
    /// Windows a socket handle).
    pub fn ready_fd(&self) -> i64 {
        raw_handle(&self.ready)
    }

    /// Hands a group to the thread; its results come back through [`Executor::collect`].
    pub fn submit(&self, ticket: u64, requests: Vec<Request>) -> StoreResult<()> {
        self.refuse_forked()?;
        match lock(&self.jobs).as_ref() {
            Some(jobs) => jobs
                .send((ticket, requests))
                .map_err(|_| StoreError::Closed),
            None => Err(StoreError::Closed),
        }
    }

    /// The groups finished since the last call.
    pub fn collect(&self) -> Vec<Finished> {
        let mut buffer = [0u8; 64];
        loop {
            match (&self.ready).read(&mut buffer) {
                Ok(0) => break,
                Ok(_) => continue,
                Err(error) if error.kind() == ErrorKind::Interrupted => continue,
                Err(_) => break, // WouldBlock: drained
            }
        }
        lock(&self.finished).drain(..).collect()
    }

    /// Runs `work` on the store on the caller's thread (between groups). A panic in it is
    /// caught and reported as an error.
    pub fn with_store<T>(&self, work: impl FnOnce(&mut Store) -> StoreResult<T>) -> StoreResult<T> {
        self.refuse_forked()?;
        match lock(&self.store).as_mut() {
            Some(store) => catch_unwind(AssertUnwindSafe(|| work(store)))
                .unwrap_or_else(|payload| Err(StoreError::Panic(panic_message(payload)))),
            None => Err(StoreError::Closed),
        }
    }

    fn refuse_forked(&self) -> StoreResult<()> {
        if std::process::id() == self.process {
            Ok(())
        } else {
            Err(StoreError::Forked)
        }
    }

    /// Finishes the group in flight, stops the thread and closes the connection. In a forked
    /// child it only lets go of them: the thread is not there to join, and closing the
    /// connection could checkpoint or remove the parent's WAL.
    pub fn close(&self) {
        // The thread runs the groups still queued, then its loop ends with the channel.
        lock(&self.jobs).take();
        let thread = lock(&self.thread).take();
        if self.refuse_forked().is_err() {
            std::mem::forget(thread);
            std::mem::forget(lock(&self.store).take());
            return;
        }
        if let Some(thread) = thread {
            let _ = thread.join();
        }
        lock(&self.store).take();
    }
}

impl Drop for Executor {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(unix)]
type ReadySocket = std::os::unix::net::UnixStream;
#[cfg(not(unix))]
type ReadySocket = std::net::TcpStream;

#[cfg(unix)]
fn socket_pair() -> std::io::Result<(ReadySocket, ReadySocket)> {
    ReadySocket::pair()
}

/// Windows has no socket pairs in std: two ends of a loopback connection.
#[cfg(not(unix))]
fn socket_pair() -> std::io::Result<(ReadySocket, ReadySocket)> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    let writer = ReadySocket::connect(listener.local_addr()?)?;
    let (reader, _) = listener.accept()?;
    writer.set_nodelay(true)?;
    Ok((reader, writer))
}

#[cfg(unix)]
fn raw_handle(socket: &ReadySocket) -> i64 {
    use std::os::unix::io::AsRawFd;
    i64::from(socket.as_raw_fd())
}

#[cfg(windows)]
fn raw_handle(socket: &ReadySocket) -> i64 {
    use std::os::windows::io::AsRawSocket;
    socket.as_raw_socket() as i64
}

fn run_guarded(store: &Mutex<Option<Store>>, requests: &[Request]) -> Vec<StoreResult<Output>> {
    let mut guard = lock(store);
    let Some(store) = guard.as_mut() else {
        return requests.iter().map(|_| Err(StoreError::Closed)).collect();
    };
    match catch_unwind(AssertUnwindSafe(|| run_group(store, requests))) {
        Ok(results) => results,
        Err(payload) => {
            let _ = store.connection.execute_batch("ROLLBACK");
            let failure = StoreError::Panic(panic_message(payload));
            requests.iter().map(|_| Err(failure.clone())).collect()
        }
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|text| text.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}
