//! Matching benchmark: accuracy per query class, speed with the audit entry, activation time and
//! memory on a large synthetic region, against two baselines over the same data (SQLite FTS5
//! trigram over names; exact normalized kana or kanji plus birth date).
//!
//! `cargo bench --bench matching` (KF_BENCH_PERSONS, default 1,000,000; KF_BENCH_QUERIES,
//! default 20,000; KF_BENCH_DIR for the temporary files). Queries come from the same generator as
//! `central synth --queries`, with their right answers. Prints figures; asserts nothing about
//! time. The baselines use SQLite directly: they are measuring sticks, not part of the product.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use std::sync::Arc;

use kaigo_field::audit::{Action, AuditLog, ChainWriter, CommitMode, NewEntry, Outcome};
use kaigo_field::keys::{AuditSealKey, CentralSigningKey, DataKey, NodeSecretKey, SealState};
use kaigo_field::model::{MunicipalityCode, PersonRecord};
use kaigo_field::search::dates::{DateHow, parse_birth_date};
use kaigo_field::search::matcher::{Index, Query, Verdict};
use kaigo_field::snapshot;
use kaigo_field::store::Store;
use kaigo_field::synth::{self, Generator, queries::QueryMaker};
use unicode_normalization::UnicodeNormalization;

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

/// Activation in a fresh process, so that resident memory is the node's and not the
/// generator's: `KF_BENCH_ACTIVATE=<dir>` holds the snapshot and its keys.
fn activate_child(dir: &std::path::Path) {
    let rss_before = rss_mb();
    let key = kaigo_field::keys::CentralPublicKey::load(&dir.join("central.pub")).expect("key");
    let data_key = DataKey::load(&dir.join("data.key")).expect("data key");
    let started = Instant::now();
    let file = std::io::BufReader::new(std::fs::File::open(dir.join("region.kfsnap")).expect("snapshot"));
    let (section, _) = snapshot::open_search(file, &key, &data_key).expect("open");
    let decrypt = started.elapsed().as_secs_f64();
    let index = Index::from_section(section);
    let total = started.elapsed().as_secs_f64();
    println!(
        "  activation in a fresh process: decrypt {decrypt:.2} s + index {:.2} s = {total:.2} s (target ≤ 5 s); resident memory {:.0} MB (process before: {rss_before:.0} MB; target ≤ 400 MB); {} persons",
        total - decrypt,
        rss_mb(),
        index.len()
    );
}

fn main() {
    if let Some(dir) = std::env::var_os("KF_BENCH_ACTIVATE") {
        activate_child(std::path::Path::new(&dir));
        return;
    }
    let persons = env("KF_BENCH_PERSONS", 1_000_000);
    let query_count = env("KF_BENCH_QUERIES", 20_000);
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

    // Activation as a node does it: decrypt the snapshot, build the index. The generated records
    // are dropped first, so the memory figure is what an active node holds.
    let central = CentralSigningKey::generate();
    let data_key = DataKey::generate();
    let mut builder = snapshot::Builder::new(&data_key);
    for r in &records {
        builder.push(r).expect("push");
    }
    let mut file = Vec::new();
    let params = snapshot::BuildParams {
        snapshot_version: 1,
        created_at: chrono::Utc::now(),
        synthetic: true,
        signing_key: &central,
        data_key: &data_key,
    };
    builder.finish(params, &mut file).expect("snapshot");
    drop(records);
    {
        let base = std::env::var_os("KF_BENCH_DIR").map(std::path::PathBuf::from).unwrap_or_else(std::env::temp_dir);
        let dir = tempfile::tempdir_in(base).expect("temporary directory");
        std::fs::write(dir.path().join("region.kfsnap"), &file).expect("write snapshot");
        central.public().save(&dir.path().join("central.pub")).expect("key");
        data_key.save(&dir.path().join("data.key")).expect("key");
        let out = std::process::Command::new(std::env::current_exe().expect("this benchmark"))
            .env("KF_BENCH_ACTIVATE", dir.path())
            .output()
            .expect("child runs");
        print!("{}", String::from_utf8_lossy(&out.stdout));
    }
    let rss_before = rss_mb();
    let started = Instant::now();
    let (section, _) = snapshot::open_search(&file[..], &central.public(), &data_key).expect("open");
    let decrypt_secs = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let index = Index::from_section(section);
    let index_secs = started.elapsed().as_secs_f64();
    println!(
        "  activation in this process: decrypt {decrypt_secs:.2} s + index {index_secs:.2} s = {:.2} s; resident memory {:.0} MB (before: {:.0} MB, most of it the generator's)",
        decrypt_secs + index_secs,
        rss_mb(),
        rss_before
    );

    let today = synth::default_as_of();
    let queries_as_matcher: Vec<Query> = queries.iter().map(|q| q.as_search()).collect();
    let mut classes: BTreeMap<&'static str, Tally> = BTreeMap::new();
    let mut latencies: Vec<Duration> = Vec::with_capacity(queries.len());
    for (q, query) in queries.iter().zip(&queries_as_matcher) {
        let t0 = Instant::now();
        let outcome = index.search(query, today);
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
                let r = index.shown(c.record);
                q.expected
                    .as_ref()
                    .is_some_and(|e| e.insured_number == r.insured_number && e.insurer_number == r.insurer_number)
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
            let top = index.shown(first.record);
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
                top.given_kana,
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

    // Server-side latency with the audit entry, on one core: the search, then a durable audit
    // entry (a commit each, as a lone request gets), as the API handler does.
    let base = std::env::var_os("KF_BENCH_DIR").map(std::path::PathBuf::from).unwrap_or_else(std::env::temp_dir);
    let tmp = tempfile::tempdir_in(base).expect("temporary directory");
    let seal = tmp.path().join("audit-seal.key");
    SealState::genesis(AuditSealKey::generate(), kaigo_field::clock::system().now()).save(&seal).expect("seal state");
    let audit = AuditLog::start(
        Store::open(&tmp.path().join("node.db")).expect("store"),
        ChainWriter::new("bench", Arc::new(NodeSecretKey::generate()), seal, kaigo_field::clock::system()),
        CommitMode::Group,
    );
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let mut audited = Vec::new();
    runtime.block_on(async {
        for q in queries_as_matcher.iter().take(5_000) {
            let t0 = Instant::now();
            let outcome = index.search(q, today);
            let mut e = NewEntry::new("staff-1", Action::Search, Outcome::Ok, "bench");
            if let Ok(o) = &outcome {
                e.subjects = o
                    .candidates
                    .iter()
                    .filter_map(|c| kaigo_field::model::PersonId::parse(&index.shown(c.record).person_id).ok())
                    .collect();
            }
            audit.record(e).await.expect("audit");
            audited.push(t0.elapsed());
        }
    });
    audited.sort();
    let pa = |x: f64| audited[((audited.len() as f64 - 1.0) * x) as usize];
    println!(
        "  search + durable audit entry (one core, {} searches): p50 {:.2?}  p95 {:.2?}  p99 {:.2?}  (target p99 ≤ 10 ms)",
        audited.len(),
        pa(0.5),
        pa(0.95),
        pa(0.99)
    );
    drop(audit);
    // The baselines index the full records.
    let mut records = Vec::with_capacity(persons as usize);
    snapshot::open(&file[..], &central.public(), &data_key, |r| records.push(r)).expect("open");
    drop(file);
    baselines(&index, &records, &queries, today, tmp.path());
}

fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// What a plain system keeps of a name: NFKC, katakana for kana, no spaces.
fn plain(name: &str) -> String {
    let n: String = name.nfkc().filter(|c| !c.is_whitespace()).collect();
    kaigo_field::model::kana::hiragana_to_katakana(&n)
}

/// The two baselines over the same records and queries: recall (the right person in the top 5)
/// and latency, on the name queries of people who are there.
fn baselines(
    index: &Index,
    records: &[PersonRecord],
    queries: &[kaigo_field::synth::queries::Query],
    today: chrono::NaiveDate,
    dir: &std::path::Path,
) {
    use std::collections::HashMap;
    let db = rusqlite::Connection::open(dir.join("baseline.db")).expect("sqlite");
    db.execute_batch(
        "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;
         CREATE VIRTUAL TABLE names USING fts5(name, tokenize = 'trigram');
         CREATE TABLE people (id INTEGER PRIMARY KEY, birth TEXT NOT NULL);",
    )
    .expect("schema");
    let started = Instant::now();
    {
        let tx = db.unchecked_transaction().expect("tx");
        {
            let mut put_name = tx.prepare("INSERT INTO names (rowid, name) VALUES (?1, ?2)").expect("stmt");
            let mut put_person = tx.prepare("INSERT INTO people (id, birth) VALUES (?1, ?2)").expect("stmt");
            for (i, r) in records.iter().enumerate() {
                let text = format!("{}{} {}{}", r.family_name, r.given_name, r.family_name_kana, r.given_name_kana);
                put_name.execute(rusqlite::params![i as i64, text]).expect("insert");
                put_person.execute(rusqlite::params![i as i64, r.birth_date.to_string()]).expect("insert");
            }
        }
        tx.commit().expect("commit");
    }
    let fts_build = started.elapsed().as_secs_f64();
    let mut exact: HashMap<(String, chrono::NaiveDate), Vec<u32>> = HashMap::new();
    for (i, r) in records.iter().enumerate() {
        let kana = plain(&format!("{}{}", r.family_name_kana, r.given_name_kana));
        let kanji = plain(&format!("{}{}", r.family_name, r.given_name));
        for key in [kana, kanji] {
            exact.entry((key, r.birth_date)).or_default().push(i as u32);
        }
    }
    let mut stmt = db
        .prepare(
            "SELECT names.rowid, people.birth FROM names JOIN people ON people.id = names.rowid
             WHERE names MATCH ?1 ORDER BY rank LIMIT 200",
        )
        .expect("query");
    let (mut fts_hits, mut exact_hits, mut ours_hits, mut n) = (0usize, 0usize, 0usize, 0usize);
    let (mut fts_lat, mut exact_lat, mut ours_lat) = (Vec::new(), Vec::new(), Vec::new());
    for q in queries.iter().filter(|q| q.expected.is_some() && q.route == "four_info") {
        let Some(name) = &q.name else { continue };
        n += 1;
        let right = |i: u32| {
            let r = &records[i as usize];
            q.expected.as_ref().is_some_and(|e| {
                e.insured_number == r.insured_number.as_str() && e.insurer_number == r.insurer_number.as_str()
            })
        };
        let readings = q.birth_date.as_deref().and_then(|b| parse_birth_date(b, today).ok()).unwrap_or_default();
        let t0 = Instant::now();
        let ours = index.search(&q.as_search(), today).map(|o| o.candidates).unwrap_or_default();
        ours_lat.push(t0.elapsed());
        if ours.iter().any(|c| right(c.record)) {
            ours_hits += 1;
        }
        // FTS5 trigram: the name as typed, as a phrase; rows born on a day the input can mean first.
        let t0 = Instant::now();
        let typed = plain(name).replace('"', "");
        let mut rows: Vec<(u32, bool)> = if typed.chars().count() >= 3 {
            stmt.query_map([format!("\"{typed}\"")], |r| Ok((r.get::<_, i64>(0)? as u32, r.get::<_, String>(1)?)))
                .map(|it| {
                    it.filter_map(Result::ok)
                        .map(|(i, b)| (i, readings.iter().any(|d| d.date.to_string() == b)))
                        .collect()
                })
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        rows.sort_by_key(|(_, born)| !born);
        rows.truncate(5);
        fts_lat.push(t0.elapsed());
        if rows.iter().any(|(i, _)| right(*i)) {
            fts_hits += 1;
        }
        // Exact: the name as typed (kana or kanji, no spaces) and the date as written.
        let t0 = Instant::now();
        let date = readings.iter().find(|d| d.how == DateHow::Exact).map(|d| d.date);
        let found: Vec<u32> = date.and_then(|d| exact.get(&(plain(name), d)).cloned()).unwrap_or_default();
        exact_lat.push(t0.elapsed());
        if found.iter().take(5).any(|&i| right(i)) {
            exact_hits += 1;
        }
    }
    fts_lat.sort();
    exact_lat.sort();
    ours_lat.sort();
    let p = |v: &Vec<Duration>, x: f64| v[((v.len() as f64 - 1.0) * x) as usize];
    println!("  baselines on the {n} name queries of people in the region (FTS5 index built in {fts_build:.1} s):");
    for (label, hits, lat) in [
        ("kaigo-field matcher", ours_hits, &ours_lat),
        ("SQLite FTS5 trigram over names", fts_hits, &fts_lat),
        ("exact normalized name + birth date", exact_hits, &exact_lat),
    ] {
        println!(
            "    {label:<38} top-5 recall {:>6.2}%  p50 {:>9.2?}  p99 {:>9.2?}",
            100.0 * hits as f64 / n as f64,
            p(lat, 0.5),
            p(lat, 0.99)
        );
    }
}
