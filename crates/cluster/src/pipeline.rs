//! Where each layer runs: consecutive layers per rank, in proportion to weights.

use std::ops::Range;

/// Splits `n_layer` layers into one consecutive range per rank, sized in
/// proportion to `weights` (a rank's memory, or a declared share). Every rank
/// with a positive weight gets at least one layer while layers last; the
/// ranges cover `0..n_layer` in rank order. Non-finite or negative weights
/// count as zero; all-zero weights split evenly.
pub fn split_layers(n_layer: usize, weights: &[f64]) -> Vec<Range<usize>> {
    let n = weights.len();
    if n == 0 {
        return Vec::new();
    }
    let w: Vec<f64> = weights
        .iter()
        .map(|&x| if x.is_finite() && x > 0.0 { x } else { 0.0 })
        .collect();
    let total: f64 = w.iter().sum();
    let w: Vec<f64> = if total > 0.0 {
        w.iter().map(|x| x / total).collect()
    } else {
        vec![1.0 / n as f64; n]
    };
    // Largest-remainder apportionment, then make sure positive weights get a layer.
    let mut counts: Vec<usize> = w
        .iter()
        .map(|x| (x * n_layer as f64).floor() as usize)
        .collect();
    // Each floor loses less than one layer, so fewer than `n` are left.
    let left = n_layer - counts.iter().sum::<usize>();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| {
        let ra = w[a] * n_layer as f64 - counts[a] as f64;
        let rb = w[b] * n_layer as f64 - counts[b] as f64;
        rb.total_cmp(&ra).then(a.cmp(&b))
    });
    for &i in order.iter().take(left) {
        counts[i] += 1;
    }
    for i in 0..n {
        if counts[i] == 0 && w[i] > 0.0 {
            if let Some(j) = (0..n).filter(|&j| counts[j] > 1).max_by_key(|&j| counts[j]) {
                counts[j] -= 1;
                counts[i] += 1;
            }
        }
    }
    let mut at = 0;
    counts
        .iter()
        .map(|&c| {
            let r = at..at + c;
            at += c;
            r
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes(r: &[Range<usize>]) -> Vec<usize> {
        r.iter().map(|r| r.len()).collect()
    }

    #[test]
    fn layers_follow_the_weights_and_cover_everything() {
        assert_eq!(sizes(&split_layers(30, &[1.0, 1.0])), [15, 15]);
        assert_eq!(
            sizes(&split_layers(30, &[1.0, 1.0, 1.0, 1.0])),
            [8, 8, 7, 7]
        );
        assert_eq!(sizes(&split_layers(30, &[1.0, 2.0])), [10, 20]);
        assert_eq!(sizes(&split_layers(18, &[1.0, 1.0, 1.0])), [6, 6, 6]);
        // A tiny weight still gets a layer; a zero weight gets none.
        assert_eq!(sizes(&split_layers(10, &[1.0, 0.001])), [9, 1]);
        assert_eq!(sizes(&split_layers(10, &[1.0, 0.0])), [10, 0]);
        // More ranks than layers: the extra ranks pass hidden states through.
        assert_eq!(sizes(&split_layers(2, &[1.0, 1.0, 1.0])), [1, 1, 0]);
        assert_eq!(sizes(&split_layers(5, &[0.0, f64::NAN])), [3, 2]);
        for n in 1..40 {
            for ranks in 1..6 {
                let r = split_layers(n, &vec![1.0; ranks]);
                assert_eq!(r.len(), ranks);
                assert_eq!(r[0].start, 0);
                assert_eq!(r.last().unwrap().end, n);
                assert!(r.windows(2).all(|w| w[0].end == w[1].start));
            }
        }
    }
}
