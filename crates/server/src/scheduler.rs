//! The batching policy: a pure function from the slots' needs to how many
//! tokens each runs in the next forward pass.
//!
//! Every decoding sequence gets its one token first, so running streams
//! never stall; the rest of the step's token budget goes to prompts still
//! being read, oldest first, in chunks (a long prompt is spread over several
//! steps instead of holding everyone else up).

/// What one slot needs this step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Free.
    Idle,
    /// Reading its prompt: this many tokens are still to be evaluated;
    /// `age` orders prompts (smaller = waiting longer).
    Prefill {
        /// Prompt tokens not yet evaluated.
        pending: usize,
        /// Arrival order.
        age: u64,
    },
    /// Generating: one token per step.
    Decode,
}

/// Tokens each slot runs in the next step, given at most `budget` tokens per step.
/// Decoding slots always get their token, even past the budget.
pub fn plan(needs: &[Need], budget: usize) -> Vec<usize> {
    let mut out: Vec<usize> = needs
        .iter()
        .map(|n| usize::from(*n == Need::Decode))
        .collect();
    let mut left = budget.saturating_sub(out.iter().sum());
    let mut prefills: Vec<(u64, usize, usize)> = needs
        .iter()
        .enumerate()
        .filter_map(|(i, n)| match *n {
            Need::Prefill { pending, age } if pending > 0 => Some((age, i, pending)),
            _ => None,
        })
        .collect();
    prefills.sort_unstable();
    for (_, i, pending) in prefills {
        if left == 0 {
            break;
        }
        let take = pending.min(left);
        out[i] = take;
        left -= take;
    }
    // A prefill must always be able to progress, even when decodes use the whole budget.
    if out.iter().all(|&n| n == 0) {
        if let Some((i, n)) = needs.iter().enumerate().find_map(|(i, n)| match *n {
            Need::Prefill { pending, .. } if pending > 0 => Some((i, pending)),
            _ => None,
        }) {
            out[i] = n.min(budget.max(1));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use Need::*;

    #[test]
    fn decodes_first_then_oldest_prompts_in_chunks() {
        let needs = [
            Decode,
            Prefill {
                pending: 700,
                age: 2,
            },
            Idle,
            Prefill {
                pending: 100,
                age: 1,
            },
            Decode,
        ];
        assert_eq!(plan(&needs, 512), vec![1, 410, 0, 100, 1]);
    }

    #[test]
    fn long_prompts_are_chunked_and_decodes_never_wait() {
        let needs = [
            Prefill {
                pending: 5000,
                age: 0,
            },
            Decode,
        ];
        assert_eq!(plan(&needs, 512), vec![511, 1]);
        let many_decodes = vec![Decode; 600];
        assert!(plan(&many_decodes, 512).iter().all(|&n| n == 1));
    }

    #[test]
    fn something_always_runs() {
        assert_eq!(plan(&[Prefill { pending: 3, age: 0 }], 0), vec![1]);
        assert_eq!(plan(&[Idle, Idle], 512), vec![0, 0]);
        assert_eq!(plan(&[], 512), Vec::<usize>::new());
    }
}
