//! An in-process [`Comm`]: ranks are threads joined by channels (for tests).

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Mutex;

use crate::{ClusterError, Comm};

enum Payload {
    Bytes(Vec<u8>),
    F32(Vec<f32>),
    F64(Vec<f64>),
}

/// One rank of a group made by [`LocalComm::group`].
pub struct LocalComm {
    rank: usize,
    to: Vec<Sender<Payload>>,
    from: Vec<Mutex<Receiver<Payload>>>,
}

impl LocalComm {
    /// `n` connected ranks; hand one to each thread.
    pub fn group(n: usize) -> Vec<LocalComm> {
        // chans[a][b]: from rank a to rank b.
        let mut senders: Vec<Vec<Option<Sender<Payload>>>> = (0..n).map(|_| Vec::new()).collect();
        let mut receivers: Vec<Vec<Option<Receiver<Payload>>>> =
            (0..n).map(|_| Vec::new()).collect();
        for row in senders.iter_mut() {
            for inbox in receivers.iter_mut() {
                let (tx, rx) = channel();
                row.push(Some(tx));
                inbox.push(Some(rx));
            }
        }
        (0..n)
            .map(|r| LocalComm {
                rank: r,
                to: senders[r]
                    .iter_mut()
                    .map(|s| s.take().expect("sender"))
                    .collect(),
                from: receivers[r]
                    .iter_mut()
                    .map(|rx| Mutex::new(rx.take().expect("receiver")))
                    .collect(),
            })
            .collect()
    }

    fn err(&self, what: impl Into<String>) -> ClusterError {
        ClusterError::Transport {
            rank: self.rank,
            what: what.into(),
        }
    }

    fn put(&self, to: usize, p: Payload) -> Result<(), ClusterError> {
        self.to
            .get(to)
            .ok_or_else(|| self.err(format!("no rank {to}")))?
            .send(p)
            .map_err(|_| self.err(format!("rank {to} has gone")))
    }

    fn get(&self, from: usize) -> Result<Payload, ClusterError> {
        let rx = self
            .from
            .get(from)
            .ok_or_else(|| self.err(format!("no rank {from}")))?;
        let rx = rx.lock().unwrap_or_else(|e| e.into_inner());
        rx.recv()
            .map_err(|_| self.err(format!("rank {from} has gone")))
    }
}

impl Comm for LocalComm {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.to.len()
    }

    fn broadcast(&self, root: usize, buf: &mut Vec<u8>) -> Result<(), ClusterError> {
        if self.rank == root {
            for r in (0..self.size()).filter(|&r| r != root) {
                self.put(r, Payload::Bytes(buf.clone()))?;
            }
            return Ok(());
        }
        match self.get(root)? {
            Payload::Bytes(b) => {
                *buf = b;
                Ok(())
            }
            _ => Err(self.err("expected a broadcast")),
        }
    }

    fn send(&self, to: usize, data: &[f32]) -> Result<(), ClusterError> {
        self.put(to, Payload::F32(data.to_vec()))
    }

    fn recv(&self, from: usize, n: usize) -> Result<Vec<f32>, ClusterError> {
        match self.get(from)? {
            Payload::F32(v) if v.len() == n => Ok(v),
            Payload::F32(v) => Err(self.err(format!(
                "expected {n} values from rank {from}, got {}",
                v.len()
            ))),
            _ => Err(self.err("expected f32 values")),
        }
    }

    fn all_reduce_sum(&self, data: &mut [f64]) -> Result<(), ClusterError> {
        // Sum at rank 0 in rank order (deterministic), then hand the result out.
        if self.rank == 0 {
            for r in 1..self.size() {
                match self.get(r)? {
                    Payload::F64(v) if v.len() == data.len() => {
                        data.iter_mut().zip(&v).for_each(|(a, b)| *a += b)
                    }
                    _ => return Err(self.err(format!("bad all-reduce part from rank {r}"))),
                }
            }
            for r in 1..self.size() {
                self.put(r, Payload::F64(data.to_vec()))?;
            }
            return Ok(());
        }
        self.put(0, Payload::F64(data.to_vec()))?;
        match self.get(0)? {
            Payload::F64(v) if v.len() == data.len() => {
                data.copy_from_slice(&v);
                Ok(())
            }
            _ => Err(self.err("bad all-reduce result")),
        }
    }

    fn all_reduce_sum_f32(&self, data: &mut [f32]) -> Result<(), ClusterError> {
        let mut wide: Vec<f64> = data.iter().map(|&x| x as f64).collect();
        // Summed in f64 in rank order, then rounded once: deterministic.
        self.all_reduce_sum(&mut wide)?;
        for (d, w) in data.iter_mut().zip(&wide) {
            *d = *w as f32;
        }
        Ok(())
    }

    fn barrier(&self) -> Result<(), ClusterError> {
        self.all_reduce_sum(&mut [])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collectives_and_messages_between_threads() {
        let comms = LocalComm::group(3);
        let results: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = comms
                .iter()
                .map(|c| {
                    s.spawn(move || {
                        let mut buf = if c.rank() == 0 {
                            b"plan".to_vec()
                        } else {
                            Vec::new()
                        };
                        c.broadcast(0, &mut buf).unwrap();
                        let mut x = vec![c.rank() as f64 + 1.0, 10.0];
                        c.all_reduce_sum(&mut x).unwrap();
                        // A ring: send to the next, receive from the previous.
                        let n = c.size();
                        c.send((c.rank() + 1) % n, &[c.rank() as f32; 2]).unwrap();
                        let got = c.recv((c.rank() + n - 1) % n, 2).unwrap();
                        c.barrier().unwrap();
                        (buf, x, got)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (r, (buf, x, got)) in results.into_iter().enumerate() {
            assert_eq!(buf, b"plan");
            assert_eq!(x, [6.0, 30.0]);
            assert_eq!(got, [((r + 2) % 3) as f32; 2]);
        }
        let lone = LocalComm::group(2).remove(0);
        assert!(
            lone.recv(1, 1).is_err(),
            "a vanished rank is an error, not a hang"
        );
    }
}
