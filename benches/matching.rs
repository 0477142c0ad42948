//! Matching benchmark: accuracy per query class and speed on a large synthetic region.
//!
//! `cargo bench --bench matching` (KF_BENCH_PERSONS, default 1,000,000; KF_BENCH_QUERIES,
//! default 5,000). Queries come from the same generator as `central synth --queries`, with their
//! right answers. Prints figures; asserts nothing about time.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kaigo_field::model::{MunicipalityCode, PersonRecord};
use kaigo_field::search::matcher::{Index, Query, Verdict};
use kaigo_field::synth::{self, Generator, queries::QueryMaker};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Fields a query got wrong (not just wrote in another script or form): a name with a typo, a
/// kana or kanji variant or a homophone; a birth date with day and month swapped. Fields left
/// out are not corruption: a query without a birth date is its own class, and sex or place left
/// out only weaken a query.
fn corrupted(noise: &[&str]) -> usize {
    let name = noise.iter().any(|n| ["typo", "kana_variant", "homophone_given_name", "variant_kanji"].contains(n));
    let birth = noise.contains(&"day_month_swapped");
    [name, birth].iter().filter(|&&b| b).count()
}

#[derive(Default)]
struct Tally {
    n: usize,
    top1: usize,
    top5: usize,
    likely: usize,
    likely_wrong: usize,
}

fn main() {
    let persons = env("KF_BENCH_PERSONS", 1_000_000);
    let query_count = env("KF_BENCH_QUERIES", 5_000);
    let params = synth::Params {
        municipalities: ["172014", "172049", "172057", "174611", "174637", "172031"]
            .iter()
            .map(|c| MunicipalityCode::parse(c).expect("code"))
            .collect(),
        persons,
        seed: 7,
        as_of: synth::default_as_of(),
    };
    let started = Instant::now();
    let mut generator = Generator::new(params.clone()).expect("generator");
    let mut maker = QueryMaker::new(params.seed, persons, query_count);
    let records: Vec<PersonRecord> = (0..persons)
        .map(|i| {
            let p = generator.person();
            maker.observe(i, &p);
            p
        })
        .collect();
    let mut absent = Generator::new(synth::Params { seed: params.seed ^ 0xAB5E, ..params.clone() }).expect("generator");
    let queries = maker.finish(|| absent.person());
    println!(
        "matching benchmark: {persons} persons, {} queries (made in {:.1} s)",
        queries.len(),
        started.elapsed().as_secs_f64()
    );

    let started = Instant::now();
    let index = Index::build(&records);
    println!("  index build (activation without decryption)  {:.2} s", started.elapsed().as_secs_f64());

    let today = synth::default_as_of();
    let mut classes: BTreeMap<&'static str, Tally> = BTreeMap::new();
    let mut latencies: Vec<Duration> = Vec::with_capacity(queries.len());
    for q in &queries {
        let query = Query {
            name: q.name.clone(),
            birth_date: q.birth_date.clone(),
            sex: q.sex.clone(),
            insurer_or_address: q.insurer_or_address.clone(),
            insurer_number: q.insurer_number.clone(),
            insured_number: q.insured_number.clone(),
        };
        let t0 = Instant::now();
        let outcome = index.search(&query, today);
        latencies.push(t0.elapsed());
        let class = if q.expected.is_none() {
            "absent"
        } else if q.noise.contains(&"surname_reading_only") {
            "surname reading + birth + sex"
        } else if q.route == "card" {
            "card route"
        } else if q.noise.contains(&"missing_birth_date") {
            "no birth date (name, sex, place)"
        } else {
            match corrupted(&q.noise) {
                0 => "clean",
                1 => "one corrupted field",
                2 => "two corrupted fields",
                _ => "three or more corrupted",
            }
        };
        let t = classes.entry(class).or_default();
        t.n += 1;
        let Ok(outcome) = outcome else { continue };
        let hit = |i: usize| {
            outcome.candidates.get(i).is_some_and(|c| {
                let r = &records[c.record as usize];
                q.expected.as_ref().is_some_and(|e| {
                    e.insured_number == r.insured_number.as_str() && e.insurer_number == r.insurer_number.as_str()
                })
            })
        };
        if hit(0) {
            t.top1 += 1;
        }
        if (0..5).any(hit) {
            t.top5 += 1;
        }
        if outcome.verdict == Verdict::Likely {
            t.likely += 1;
            if !hit(0) {
                t.likely_wrong += 1;
            }
        }
        // KF_BENCH_SHOW=<class> prints that class's misses, for tuning.
        if std::env::var("KF_BENCH_SHOW").is_ok_and(|c| c == class) && (!hit(0) || q.expected.is_none()) {
            let Some(first) = outcome.candidates.first() else {
                println!(
                    "    miss {:?} {:?} {:?} {:?} {:?} -> nobody",
                    q.name, q.birth_date, q.sex, q.insurer_or_address, q.noise
                );
                continue;
            };
            let top = &records[first.record as usize];
            println!(
                "    miss {:?} {:?} {:?} {:?} {:?} -> {:?} top {}{} {} {} score {:.1}",
                q.name,
                q.birth_date,
                q.sex,
                q.insurer_or_address,
                q.noise,
                outcome.verdict,
                top.family_name,
                top.given_name,
                top.given_name_kana,
                top.birth_date,
                first.score
            );
        }
    }
    println!("  {:<32} {:>6} {:>8} {:>8} {:>8} {:>12}", "class", "n", "top-1", "top-5", "likely", "likely wrong");
    for (class, t) in &classes {
        let pct = |x: usize| 100.0 * x as f64 / t.n.max(1) as f64;
        println!(
            "  {class:<32} {:>6} {:>7.2}% {:>7.2}% {:>7.2}% {:>11.2}%",
            t.n,
            pct(t.top1),
            pct(t.top5),
            pct(t.likely),
            pct(t.likely_wrong)
        );
    }
    latencies.sort();
    let p = |x: f64| latencies[((latencies.len() as f64 - 1.0) * x) as usize];
    println!(
        "  search latency (matcher only, one thread): p50 {:.2?}  p95 {:.2?}  p99 {:.2?}",
        p(0.5),
        p(0.95),
        p(0.99)
    );
}
