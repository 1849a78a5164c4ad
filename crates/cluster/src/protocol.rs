//! What rank 0 tells the other ranks, as bytes for [`crate::Comm::broadcast`].

use sparetire_models::{Arithmetic, KvType, KvTypes, Logits};

use crate::ClusterError;

/// One sequence's part of a forward call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeqPlan {
    /// Rank 0's state id (followers keep a state per id).
    pub id: u64,
    /// The state's context size.
    pub n_ctx: usize,
    /// Positions the sequence keeps before this call (a follower truncates to it).
    pub n_past: usize,
    /// The tokens to append.
    pub tokens: Vec<u32>,
    /// Which of them get logits.
    pub logits: Logits,
    /// How products compute its tokens.
    pub arithmetic: Arithmetic,
    /// How its KV cache stores rows (a follower makes its state with them).
    pub kv_types: KvTypes,
}

/// A message from rank 0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Msg {
    /// Run one forward call over these sequences.
    Forward(Vec<SeqPlan>),
    /// Forget the state with this id.
    Drop(u64),
    /// The command is over: leave the follow loop.
    Stop,
}

impl Msg {
    /// The message as bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let u64 = |out: &mut Vec<u8>, v: u64| out.extend_from_slice(&v.to_le_bytes());
        match self {
            Msg::Stop => out.push(0),
            Msg::Drop(id) => {
                out.push(1);
                u64(&mut out, *id);
            }
            Msg::Forward(seqs) => {
                out.push(2);
                u64(&mut out, seqs.len() as u64);
                for s in seqs {
                    u64(&mut out, s.id);
                    u64(&mut out, s.n_ctx as u64);
                    u64(&mut out, s.n_past as u64);
                    out.push(match s.logits {
                        Logits::Last => 0,
                        Logits::All => 1,
                        Logits::None => 2,
                    });
                    out.push(match s.arithmetic {
                        Arithmetic::Reference => 0,
                        Arithmetic::PerToken => 1,
                    });
                    out.push(kv_code(s.kv_types.k));
                    out.push(kv_code(s.kv_types.v));
                    u64(&mut out, s.tokens.len() as u64);
                    for t in &s.tokens {
                        out.extend_from_slice(&t.to_le_bytes());
                    }
                }
            }
        }
        out
    }

    /// Reads a message; `rank` names the receiver in errors.
    pub fn decode(bytes: &[u8], rank: usize) -> Result<Msg, ClusterError> {
        let bad = |what: &str| ClusterError::Protocol {
            rank,
            what: what.to_owned(),
        };
        let mut r = Reader { b: bytes, at: 0 };
        let msg = match r.u8().ok_or_else(|| bad("empty message"))? {
            0 => Msg::Stop,
            1 => Msg::Drop(r.u64().ok_or_else(|| bad("short drop"))?),
            2 => {
                let n = r.len(bytes.len()).ok_or_else(|| bad("sequence count"))?;
                let mut seqs = Vec::with_capacity(n);
                for _ in 0..n {
                    let short = || bad("short sequence plan");
                    let id = r.u64().ok_or_else(short)?;
                    let n_ctx = r.u64().ok_or_else(short)? as usize;
                    let n_past = r.u64().ok_or_else(short)? as usize;
                    let logits = match r.u8().ok_or_else(short)? {
                        0 => Logits::Last,
                        1 => Logits::All,
                        2 => Logits::None,
                        _ => return Err(bad("logits mode")),
                    };
                    let arithmetic = match r.u8().ok_or_else(short)? {
                        0 => Arithmetic::Reference,
                        1 => Arithmetic::PerToken,
                        _ => return Err(bad("arithmetic")),
                    };
                    let mut kv = || {
                        let c = r.u8().ok_or_else(short)?;
                        KvType::ALL
                            .get(usize::from(c))
                            .copied()
                            .ok_or_else(|| bad("KV cache type"))
                    };
                    let kv_types = KvTypes { k: kv()?, v: kv()? };
                    let nt = r.len(bytes.len() / 4).ok_or_else(short)?;
                    let mut tokens = Vec::with_capacity(nt);
                    for _ in 0..nt {
                        tokens.push(r.u32().ok_or_else(short)?);
                    }
                    seqs.push(SeqPlan {
                        id,
                        n_ctx,
                        n_past,
                        tokens,
                        logits,
                        arithmetic,
                        kv_types,
                    });
                }
                Msg::Forward(seqs)
            }
            _ => return Err(bad("unknown message kind")),
        };
        if r.at != bytes.len() {
            return Err(bad("trailing bytes"));
        }
        Ok(msg)
    }
}

/// A cache type on the wire: its index in [`KvType::ALL`].
fn kv_code(t: KvType) -> u8 {
    KvType::ALL.iter().position(|&x| x == t).unwrap_or(0) as u8
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let s = self.b.get(self.at..self.at + N)?;
        self.at += N;
        s.try_into().ok()
    }
    fn u8(&mut self) -> Option<u8> {
        self.take::<1>().map(|b| b[0])
    }
    fn u32(&mut self) -> Option<u32> {
        self.take::<4>().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take::<8>().map(u64::from_le_bytes)
    }
    /// A count no larger than `max` (so a bad message cannot make us allocate much).
    fn len(&mut self, max: usize) -> Option<usize> {
        self.u64()
            .filter(|&n| n as usize <= max)
            .map(|n| n as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_bad_bytes_are_errors() {
        let msgs = [
            Msg::Stop,
            Msg::Drop(7),
            Msg::Forward(vec![
                SeqPlan {
                    id: 3,
                    n_ctx: 512,
                    n_past: 10,
                    tokens: vec![1, 2, 65535],
                    logits: Logits::All,
                    arithmetic: Arithmetic::PerToken,
                    kv_types: KvTypes {
                        k: KvType::Q8_0,
                        v: KvType::Q4_0,
                    },
                },
                SeqPlan {
                    id: 4,
                    n_ctx: 64,
                    n_past: 0,
                    tokens: vec![9],
                    logits: Logits::None,
                    arithmetic: Arithmetic::Reference,
                    kv_types: KvTypes::F16,
                },
            ]),
        ];
        for m in msgs {
            let b = m.encode();
            assert_eq!(Msg::decode(&b, 1).unwrap(), m);
            for cut in 0..b.len() {
                assert!(Msg::decode(&b[..cut], 1).is_err(), "{m:?} cut at {cut}");
            }
        }
        let mut huge = vec![2u8];
        huge.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(Msg::decode(&huge, 2).is_err());
        assert!(Msg::decode(&[9], 2).is_err());
    }
}
