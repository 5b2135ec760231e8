//! The tasks: MQAR generator invariants (Zoology's `multiquery_ar`), corpus split and batches.

use std::collections::HashSet;
use std::path::Path;

use lab_train::{CorpusTask, IGNORE, MqarTask, TaskSpec};

fn mqar(random_non_queries: bool) -> MqarTask {
    MqarTask {
        vocab_size: 128,
        input_seq_len: 64,
        num_kv_pairs: 8,
        power_a: 0.01,
        random_non_queries,
        num_train_examples: 300,
        num_test_examples: 50,
        train_seed: 10,
        test_seed: 20,
    }
}

#[test]
fn mqar_examples_satisfy_zoology_invariants() {
    for random in [false, true] {
        let m = mqar(random);
        let ex = m.generate(300, 5);
        let (v, l, n) = (m.vocab_size as i64, m.input_seq_len, m.num_kv_pairs);
        let context = 2 * n;
        let space = (l - context) / 2;
        assert_eq!((ex.n, ex.len), (300, l));
        let mut gaps_seen = HashSet::new();
        for i in 0..ex.n {
            let (x, y) = (ex.input(i), ex.label(i));
            let keys: Vec<i64> = (0..n).map(|j| x[2 * j]).collect();
            let vals: Vec<i64> = (0..n).map(|j| x[2 * j + 1]).collect();
            // keys from [1, V/2), values from [V/2, V), each drawn once
            assert!(keys.iter().all(|&k| 1 <= k && k < v / 2), "{keys:?}");
            assert!(vals.iter().all(|&w| v / 2 <= w && w < v), "{vals:?}");
            assert_eq!(keys.iter().collect::<HashSet<_>>().len(), n);
            assert_eq!(vals.iter().collect::<HashSet<_>>().len(), n);
            // labels: exactly n answers, all at query positions, everything else masked
            let answers: Vec<usize> = (0..l).filter(|&p| y[p] != IGNORE).collect();
            assert_eq!(answers.len(), n);
            assert!(y.iter().all(|&t| t == IGNORE || (v / 2 <= t && t < v)));
            let mut queried = HashSet::new();
            for &p in &answers {
                assert!(p >= context && p < l, "answer at {p}");
                let gap = (p - context) / 2;
                assert_eq!((p - context) % 2, 0);
                assert!(gap < space);
                gaps_seen.insert(gap);
                let j = keys
                    .iter()
                    .position(|&k| k == x[p])
                    .expect("query is a key");
                assert_eq!(y[p], vals[j], "the answer is the queried key's value");
                queried.insert(j);
            }
            assert_eq!(queried.len(), n, "each key queried once");
            if !random {
                // filler is 0 everywhere but the context and the queries
                for p in context..l {
                    assert_eq!(x[p] != 0, y[p] != IGNORE, "position {p}");
                }
            } else {
                assert!(x.iter().all(|&t| (0..v).contains(&t)));
            }
        }
        // the power law with a = 0.01 is nearly flat: gaps spread over the whole space
        assert!(
            gaps_seen.len() > space / 2,
            "{} of {space}",
            gaps_seen.len()
        );
        // deterministic per seed, different per seed
        assert_eq!(m.generate(300, 5), ex);
        assert_ne!(m.generate(300, 6).inputs, ex.inputs);
    }
}

#[test]
fn mqar_power_law_favours_short_gaps_for_large_a() {
    // a = 0.01 gives p(g) ∝ g^-0.99: the first gap is the most likely
    let m = MqarTask {
        num_kv_pairs: 1,
        ..mqar(false)
    };
    let ex = m.generate(2000, 3);
    let context = 2;
    let mut first = 0;
    let mut last_half = 0;
    let space = (m.input_seq_len - context) / 2;
    for i in 0..ex.n {
        let p = (0..m.input_seq_len)
            .find(|&p| ex.label(i)[p] != IGNORE)
            .unwrap();
        let g = (p - context) / 2;
        if g == 0 {
            first += 1;
        }
        if g >= space / 2 {
            last_half += 1;
        }
    }
    // p(g=1) = 1/H ≈ 1/(ln 31 + 0.58) ≈ 0.25; the upper half has ≈ ln 2 / H ≈ 0.17
    assert!(first > 400 && first < 600, "{first}");
    assert!(last_half > 250 && last_half < 450, "{last_half}");
}

#[test]
fn mqar_train_and_test_sets_differ_and_batches_are_pure_functions_of_the_step() {
    let spec = TaskSpec::Mqar(mqar(true));
    assert_eq!(
        (spec.name(), spec.metric_name(), spec.vocab_size()),
        ("mqar", "query_accuracy", 128)
    );
    let task = spec.load(64).unwrap();
    let (train, test) = task.mqar_examples().unwrap();
    assert_eq!((train.n, test.n), (300, 50));
    assert_ne!(train.input(0), test.input(0));
    assert_eq!(task.train_batch(1, 5, 8), task.train_batch(1, 5, 8));
    assert_ne!(task.train_batch(1, 5, 8), task.train_batch(1, 6, 8));
    assert_ne!(task.train_batch(1, 5, 8), task.train_batch(2, 5, 8));
    // the test set is evaluated whole, in batches of at most 16
    let eval = task.eval_set(16, 1);
    assert_eq!(eval.iter().map(|b| b.rows).sum::<usize>(), 50);
    assert!(eval.iter().all(|b| b.rows <= 16 && b.time == 64));
}

#[test]
fn corpus_split_windows_and_metric() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../experiments/data/shakespeare-tragedies.txt");
    let spec = TaskSpec::Corpus(CorpusTask {
        path: path.clone(),
        val_fraction: 0.1,
    });
    assert_eq!(
        (spec.name(), spec.metric_name(), spec.vocab_size()),
        ("corpus", "bits_per_char", 256)
    );
    let bytes = std::fs::read(&path).unwrap();
    let task = spec.load(64).unwrap();
    let (train, val) = task.corpus_split().unwrap();
    assert_eq!(train.len() + val.len(), bytes.len());
    assert_eq!(
        val.len(),
        bytes.len() - (bytes.len() as f64 * 0.9).floor() as usize
    );
    assert_eq!(val, &bytes[train.len()..]);
    let b = task.train_batch(3, 0, 4);
    assert_eq!((b.rows, b.time, b.inputs.len()), (4, 64, 256));
    for r in 0..4 {
        // targets are the inputs shifted by one, taken from the training part
        assert_eq!(
            b.inputs[r * 64 + 1..(r + 1) * 64],
            b.targets[r * 64..(r + 1) * 64 - 1]
        );
    }
    let eval = task.eval_set(4, 3);
    assert_eq!(eval.len(), 3);
    assert_eq!(eval, task.eval_set(4, 3), "fixed validation windows");
    let first: Vec<u8> = eval[0].inputs[..64].iter().map(|&x| x as u8).collect();
    assert_eq!(first, val[..64]);
    // a file too short for the windows, and a bad fraction
    let dir = tempfile::tempdir().unwrap();
    let short = dir.path().join("short.txt");
    std::fs::write(&short, "tiny").unwrap();
    let e = TaskSpec::Corpus(CorpusTask {
        path: short,
        val_fraction: 0.1,
    })
    .load(64)
    .unwrap_err();
    assert!(e.to_string().contains("too short"), "{e}");
    let e = TaskSpec::Corpus(CorpusTask {
        path,
        val_fraction: 1.5,
    })
    .load(64)
    .unwrap_err();
    assert!(e.to_string().contains("val_fraction"), "{e}");
}
