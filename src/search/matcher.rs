//! The matcher: an in-memory index of the open records and a Fellegi–Sunter style score.
//!
//! Candidates come from blocks (same birth date under any reading of the typed date, same
//! reading, same surname), then each is scored field by field: agreement on a field adds
//! log2(m/u), where u is how often that value occurs in the region (so 佐藤 counts for less
//! than 小鳥遊), disagreement subtracts. Kanji names meet readings through kanji-to-reading pairs
//! learned from the records themselves. Pure: records in, candidates out.

use std::collections::{HashMap, HashSet};

use chrono::{Datelike, NaiveDate};
use serde::Serialize;
use unicode_normalization::UnicodeNormalization;

use super::dates::{DateHow, DateReading, parse_birth_date};
use super::normalize::{Script, kanji_key, reading_key, script};
use super::section::{Row, SearchSection, section_of};
use crate::limits::SEARCH_CANDIDATES_MAX;
use crate::model::{MunicipalityCode, PersonRecord, Sex};
use crate::region;

/// What the matcher keeps per person: the section row and the weights of its name.
struct Person {
    row: Row,
    /// Where the person's full record is in the snapshot: the row's place in the whole search
    /// section, which the index may hold only part of.
    snapshot_position: u32,
    /// Evidence (bits) of agreeing on this surname / given name: rarer names weigh more.
    family_weight: f32,
    given_weight: f32,
}

impl Person {
    fn birth(&self) -> NaiveDate {
        NaiveDate::from_num_days_from_ce_opt(self.row.birth).unwrap_or(NaiveDate::MIN)
    }

    fn sex(&self) -> Sex {
        if self.row.sex == 1 { Sex::Male } else { Sex::Female }
    }
}

/// The open region, as the matcher holds it: the search section's rows and strings, and blocks
/// of row numbers keyed by string id. Small: no free text, every string once.
pub struct Index {
    strings: Vec<String>,
    ids: HashMap<String, u32>,
    people: Vec<Person>,
    by_birth: HashMap<i32, Vec<u32>>,
    by_full_reading: HashMap<u32, Vec<u32>>,
    by_family_reading: HashMap<u32, Vec<u32>>,
    by_family_kanji: HashMap<u32, Vec<u32>>,
    by_insured: HashMap<[u8; 10], Vec<u32>>,
    /// Readings seen for each surname and given name in kanji, learned from the records.
    family_kanji_readings: HashMap<u32, Vec<u32>>,
    given_kanji_readings: HashMap<u32, Vec<u32>>,
    /// 市区町村名 and 保険者名 (kanji keys) per municipality code id.
    municipality_places: HashMap<u32, Vec<String>>,
}

/// What a candidate shows so staff can tell people apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shown<'a> {
    pub person_id: String,
    pub family_name: &'a str,
    pub given_name: &'a str,
    pub family_kana: &'a str,
    pub given_kana: &'a str,
    pub birth_date: NaiveDate,
    pub sex: Sex,
    pub municipality: &'a str,
    pub insurer_number: &'a str,
    pub insured_number: String,
}

/// A search as staff enter it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
pub struct Query {
    pub name: Option<String>,
    pub birth_date: Option<String>,
    pub sex: Option<String>,
    /// 保険者名 or part of the address.
    pub insurer_or_address: Option<String>,
    /// 保険者番号 or 証記載保険者番号 (card route).
    pub insurer_number: Option<String>,
    pub insured_number: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn morae_and_slips() {
        assert_eq!(morae("simizunobuko"), ["si", "mi", "zu", "no", "bu", "ko"]);
        // シンイチ and シニチ read alike once written in letters: a known blur, harmless here.
        assert_eq!(morae("sinitiro"), ["si", "ni", "ti", "ro"]);
        assert_eq!(morae("kenta"), ["ke", "n", "ta"]);
        assert!(near("simizu", "sizumi"), "two morae swapped");
        assert!(near("tanaka", "tanama"), "one replaced");
        assert!(near("tanaka", "tanka"), "one dropped");
        assert!(!near("yosiko", "noriko"));
        assert!(near("sato", "kato"), "one mora apart is near");
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Grade {
    Certain,
    Probable,
    Possible,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    Name,
    FamilyName,
    GivenName,
    BirthDate,
    Sex,
    Place,
    InsurerNumber,
    InsuredNumber,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Candidate {
    /// Position of the record in the open data.
    pub record: u32,
    pub score: f64,
    pub grade: Grade,
    pub agreed: Vec<Field>,
    /// The whole name and the birth date agreed as written: only then may a candidate be called
    /// likely. A near name or a surname alone can be a stranger born the same day.
    #[serde(skip)]
    pub firm: bool,
}

/// What the search says, beyond the list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// One candidate clearly beats the rest.
    Likely,
    /// Two or more fit about equally well: ask the person more.
    Ambiguous,
    /// Candidates that might fit, none clearly.
    Possible,
    /// Nobody fits.
    NotFound,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    pub verdict: Verdict,
    pub candidates: Vec<Candidate>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error(
        "検索には、氏名と生年月日、または氏名・性別・保険者名（住所の一部）が必要です（一覧を見ることはできません）"
    )]
    NotEnough,
    #[error("被保険者証での検索には、保険者番号・被保険者番号・生年月日のすべてが必要です")]
    CardIncomplete,
    #[error(transparent)]
    Date(#[from] super::dates::DateError),
    #[error("性別は 男 か 女 で入力してください: {0}")]
    Sex(String),
}

// Score thresholds (bits). Calibrated on synthetic queries: see BENCHMARKS.md.
const LIKELY_MIN: f64 = 22.0;
const LIKELY_MARGIN: f64 = 6.0;
const AMBIGUOUS_MARGIN: f64 = 2.0;
const POSSIBLE_MIN: f64 = 12.0;
const PROBABLE_MIN: f64 = 18.0;

/// Blocks larger than this are not scored whole when a birth date narrows the search.
const NAME_BLOCK_MAX: usize = 3000;

fn digits(s: &str) -> String {
    s.nfkc().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_uppercase()).collect()
}

pub fn parse_sex(s: &str) -> Result<Option<Sex>, QueryError> {
    let t: String = s.nfkc().filter(|c| !c.is_whitespace()).collect::<String>().to_lowercase();
    Ok(match t.as_str() {
        "" => None,
        "1" | "男" | "男性" | "m" | "male" | "おとこ" => Some(Sex::Male),
        "2" | "女" | "女性" | "f" | "female" | "おんな" => Some(Sex::Female),
        _ => return Err(QueryError::Sex(s.to_owned())),
    })
}

impl Index {
    /// The index of a list of records (tests, and nodes given records directly).
    pub fn build(records: &[PersonRecord]) -> Index {
        Index::from_section(section_of(records))
    }

    /// The index of a snapshot's whole search section.
    pub fn from_section(section: SearchSection) -> Index {
        Index::from_section_within(section, |_| true)
    }

    /// The index of the people of a snapshot's search section whose 市区町村コード `keep`
    /// accepts; nobody else is even held in memory. Frequencies are counted over those kept.
    pub fn from_section_within(section: SearchSection, keep: impl Fn(&str) -> bool) -> Index {
        let SearchSection { strings, mut rows } = section;
        let kept_municipality: Vec<bool> = strings.iter().map(|s| keep(s)).collect();
        let kept = |row: &Row| kept_municipality.get(row.municipality as usize).copied().unwrap_or(false);
        // Filtered in place (a million rows are ~100 MB; no second copy).
        let positions: Vec<u32> = rows.iter().enumerate().filter(|(_, row)| kept(row)).map(|(i, _)| i as u32).collect();
        rows.retain(kept);
        let ids: HashMap<String, u32> = strings.iter().enumerate().map(|(i, s)| (s.clone(), i as u32)).collect();
        let mut idx = Index {
            strings,
            ids,
            people: Vec::with_capacity(rows.len()),
            by_birth: HashMap::new(),
            by_full_reading: HashMap::new(),
            by_family_reading: HashMap::new(),
            by_family_kanji: HashMap::new(),
            by_insured: HashMap::with_capacity(rows.len()),
            family_kanji_readings: HashMap::new(),
            given_kanji_readings: HashMap::new(),
            municipality_places: HashMap::new(),
        };
        let mut family_count: HashMap<u32, u32> = HashMap::new();
        let mut given_count: HashMap<u32, u32> = HashMap::new();
        for (i, row) in rows.iter().enumerate() {
            let i = i as u32;
            idx.by_birth.entry(row.birth).or_default().push(i);
            idx.by_full_reading.entry(row.full_reading).or_default().push(i);
            idx.by_family_reading.entry(row.family_reading).or_default().push(i);
            idx.by_family_kanji.entry(row.family_kanji).or_default().push(i);
            idx.by_insured.entry(row.insured).or_default().push(i);
            *family_count.entry(row.family_reading).or_default() += 1;
            *given_count.entry(row.given_reading).or_default() += 1;
            let learn = |m: &mut HashMap<u32, Vec<u32>>, k: u32, v: u32| {
                let list = m.entry(k).or_default();
                if !list.contains(&v) {
                    list.push(v);
                }
            };
            learn(&mut idx.family_kanji_readings, row.family_kanji, row.family_reading);
            learn(&mut idx.given_kanji_readings, row.given_kanji, row.given_reading);
            if !idx.municipality_places.contains_key(&row.municipality) {
                let places = MunicipalityCode::parse(&idx.strings[row.municipality as usize])
                    .ok()
                    .and_then(region::lookup)
                    .map(|m| vec![kanji_key(&m.name), kanji_key(m.insurer_name())])
                    .unwrap_or_default();
                idx.municipality_places.insert(row.municipality, places);
            }
        }
        let n = rows.len() as f64 + 1.0;
        let weight = |count: Option<&u32>| ((0.95 * n) / (f64::from(count.copied().unwrap_or(0)) + 0.5)).log2() as f32;
        for (snapshot_position, row) in positions.into_iter().zip(rows) {
            let family_weight = weight(family_count.get(&row.family_reading));
            let given_weight = weight(given_count.get(&row.given_reading));
            idx.people.push(Person { row, snapshot_position, family_weight, given_weight });
        }
        idx
    }

    fn s(&self, id: u32) -> &str {
        self.strings.get(id as usize).map_or("", String::as_str)
    }

    fn id(&self, s: &str) -> Option<u32> {
        self.ids.get(s).copied()
    }

    pub fn len(&self) -> usize {
        self.people.len()
    }

    pub fn is_empty(&self) -> bool {
        self.people.is_empty()
    }

    /// Where the full record of the person with this pseudonymous id (hex) is in the snapshot,
    /// if the index holds them.
    pub fn position_of(&self, person_id: &str) -> Option<u32> {
        let mut wanted = [0u8; 16];
        hex::decode_to_slice(person_id, &mut wanted).ok()?;
        self.people.iter().find(|p| p.row.person_id == wanted).map(|p| p.snapshot_position)
    }

    /// What candidate `record` shows.
    pub fn shown(&self, record: u32) -> Shown<'_> {
        let p = &self.people[record as usize];
        let municipality = self.s(p.row.municipality);
        Shown {
            person_id: hex::encode(p.row.person_id),
            family_name: self.s(p.row.family_name),
            given_name: self.s(p.row.given_name),
            family_kana: self.s(p.row.family_kana),
            given_kana: self.s(p.row.given_kana),
            birth_date: p.birth(),
            sex: p.sex(),
            municipality,
            insurer_number: self.s(p.row.insurer),
            insured_number: String::from_utf8_lossy(&p.row.insured).into_owned(),
        }
    }

    /// Runs a search. `today` bounds the readings of a birth year written without its era.
    pub fn search(&self, q: &Query, today: NaiveDate) -> Result<Outcome, QueryError> {
        let has = |o: &Option<String>| o.as_ref().is_some_and(|s| !s.trim().is_empty());
        if has(&q.insurer_number) || has(&q.insured_number) {
            return self.card(q, today);
        }
        let sex = q.sex.as_deref().map(parse_sex).transpose()?.flatten();
        let place = q.insurer_or_address.as_deref().map(kanji_key).filter(|p| !p.is_empty());
        let Some(name) = q.name.as_deref().filter(|n| !n.trim().is_empty()) else {
            return Err(QueryError::NotEnough);
        };
        let births: Vec<DateReading> = match q.birth_date.as_deref().filter(|b| !b.trim().is_empty()) {
            Some(b) => parse_birth_date(b, today)?,
            None if sex.is_some() && place.is_some() => Vec::new(),
            None => return Err(QueryError::NotEnough),
        };
        let name = NameQuery::new(name, self);

        // Candidates: the birth-date blocks, plus name blocks small enough to score.
        let mut seen: HashSet<u32> = HashSet::new();
        let mut candidates: Vec<u32> = Vec::new();
        let mut add = |list: &[u32], seen: &mut HashSet<u32>| {
            for &i in list {
                if seen.insert(i) {
                    candidates.push(i);
                }
            }
        };
        for b in &births {
            if let Some(list) = self.by_birth.get(&b.date.num_days_from_ce()) {
                add(list, &mut seen);
            }
        }
        for block in name.blocks(self) {
            if births.is_empty() || block.len() <= NAME_BLOCK_MAX {
                add(block, &mut seen);
            }
        }

        let mut scored: Vec<Candidate> = candidates
            .into_iter()
            .map(|i| self.score(i, &name, &births, sex, place.as_deref()))
            .filter(|c| c.score >= POSSIBLE_MIN)
            .collect();
        scored.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.record.cmp(&b.record)));
        scored.truncate(SEARCH_CANDIDATES_MAX);
        Ok(Outcome { verdict: verdict(&scored), candidates: scored })
    }

    fn card(&self, q: &Query, today: NaiveDate) -> Result<Outcome, QueryError> {
        let (Some(insurer), Some(insured), Some(birth)) = (&q.insurer_number, &q.insured_number, &q.birth_date) else {
            return Err(QueryError::CardIncomplete);
        };
        let (insurer, insured) = (digits(insurer), digits(insured));
        if insurer.is_empty() || insured.is_empty() || birth.trim().is_empty() {
            return Err(QueryError::CardIncomplete);
        }
        let births = parse_birth_date(birth, today)?;
        let mut out = Vec::new();
        let key: Option<[u8; 10]> = insured.as_bytes().try_into().ok();
        for &i in key.and_then(|k| self.by_insured.get(&k)).map_or(&[][..], |v| v.as_slice()) {
            let p = &self.people[i as usize];
            let insurer_ok = self.s(p.row.insurer) == insurer || self.s(p.row.card_insurer) == insurer;
            let birth_ok = births.iter().any(|b| b.date == p.birth());
            if insurer_ok && birth_ok {
                out.push(Candidate {
                    record: i,
                    score: 60.0,
                    grade: Grade::Certain,
                    agreed: vec![Field::InsurerNumber, Field::InsuredNumber, Field::BirthDate],
                    firm: true,
                });
            }
        }
        Ok(Outcome { verdict: verdict(&out), candidates: out })
    }

    fn score(
        &self,
        i: u32,
        name: &NameQuery,
        births: &[DateReading],
        sex: Option<Sex>,
        place: Option<&str>,
    ) -> Candidate {
        let p = &self.people[i as usize];
        let mut score = 0.0;
        let mut agreed = Vec::new();
        let (name_score, name_fields, name_exact) = name.score(p, self);
        score += name_score;
        agreed.extend(name_fields);
        let mut birth_firm = false;

        if !births.is_empty() {
            // About 1 in 30,000 share a birth date in a population of elders.
            let best = births
                .iter()
                .map(|b| {
                    if b.date == p.birth() {
                        match b.how {
                            DateHow::Exact => 14.0,
                            DateHow::EraGuessed => 12.0,
                            DateHow::Swapped => 9.0,
                        }
                    } else if b.date.year() == p.birth().year() && b.date.month() == p.birth().month() {
                        2.0
                    } else if b.date.month() == p.birth().month() && b.date.day() == p.birth().day() {
                        1.0
                    } else {
                        -9.0
                    }
                })
                .fold(f64::MIN, f64::max);
            score += best;
            if best >= 9.0 {
                agreed.push(Field::BirthDate);
            }
            birth_firm = best >= 12.0;
        }
        if let Some(s) = sex {
            if s == p.sex() {
                score += 1.0;
                agreed.push(Field::Sex);
            } else {
                score -= 6.0;
            }
        }
        if let Some(place) = place {
            let town = (p.row.town != u32::MAX).then(|| self.s(p.row.town));
            let places = self.municipality_places.get(&p.row.municipality).into_iter().flatten().map(String::as_str);
            let hit = places.chain(town).any(|x| !x.is_empty() && (x.contains(place) || place.contains(x)));
            if hit {
                score += 3.0;
                agreed.push(Field::Place);
            } else {
                score -= 2.0;
            }
        }
        let firm = name_exact && birth_firm;
        let grade = if score >= LIKELY_MIN && firm {
            Grade::Certain
        } else if score >= PROBABLE_MIN {
            Grade::Probable
        } else {
            Grade::Possible
        };
        Candidate { record: i, score, grade, agreed, firm }
    }
}

fn verdict(c: &[Candidate]) -> Verdict {
    match c {
        [] => Verdict::NotFound,
        [only] if only.score >= LIKELY_MIN && only.firm => Verdict::Likely,
        [first, second, ..]
            if first.score >= LIKELY_MIN && first.firm && first.score - second.score >= LIKELY_MARGIN =>
        {
            Verdict::Likely
        }
        [first, second, ..] if first.score >= PROBABLE_MIN && first.score - second.score < AMBIGUOUS_MARGIN => {
            Verdict::Ambiguous
        }
        [first, ..] if first.score >= POSSIBLE_MIN => Verdict::Possible,
        _ => Verdict::NotFound,
    }
}

/// The typed name, read every way it can be.
struct NameQuery {
    /// Whole-name reading keys to compare (one per way of reading the kanji, or the typed kana).
    full_readings: Vec<String>,
    /// (family, given) reading pairs, when the name could be split.
    split_readings: Vec<(String, String)>,
    /// (family, given) kanji keys, when typed in kanji.
    split_kanji: Vec<(String, String)>,
    full_kanji: Option<String>,
}

/// A reading key cut into morae ("simizu" → si, mi, zu), the units a typing or hearing slip
/// changes: one replaced, dropped, added, or two neighbours swapped.
fn morae(key: &str) -> Vec<&str> {
    let b = key.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    for i in 0..b.len() {
        let vowel = b"aiueo".contains(&b[i]);
        let lone_n = b[i] == b'n' && i == start && b.get(i + 1).is_none_or(|n| !b"aiueoy".contains(n));
        if vowel || lone_n {
            out.push(&key[start..=i]);
            start = i + 1;
        }
    }
    if start < b.len() {
        out.push(&key[start..]);
    }
    out
}

/// Near enough for one slip (two in a whole name of six morae or more, where a slip next to a
/// long vowel can count twice).
fn near(a: &str, b: &str) -> bool {
    if a.is_empty() || b.is_empty() {
        return false;
    }
    let (ma, mb) = (morae(a), morae(b));
    let allowed = if ma.len().min(mb.len()) >= 6 { 2 } else { 1 };
    strsim::generic_damerau_levenshtein(&ma, &mb) <= allowed
}

impl NameQuery {
    fn new(raw: &str, idx: &Index) -> NameQuery {
        let raw = raw.nfkc().collect::<String>();
        let parts: Vec<&str> = raw.split(|c: char| c.is_whitespace() || c == '・').filter(|p| !p.is_empty()).collect();
        let mut q = NameQuery {
            full_readings: Vec::new(),
            split_readings: Vec::new(),
            split_kanji: Vec::new(),
            full_kanji: None,
        };
        let whole: String = parts.concat();
        match script(&whole) {
            Script::Kana | Script::Romaji => {
                if let Some(k) = reading_key(&whole) {
                    q.full_readings.push(k.clone());
                    if parts.len() == 1 {
                        // One word may be the surname alone (a neighbour's "the Satos' grandma").
                        q.split_readings.push((k, String::new()));
                    }
                }
                if parts.len() >= 2 {
                    let (a, b) = (
                        reading_key(parts[0]).unwrap_or_default(),
                        reading_key(&parts[1..].concat()).unwrap_or_default(),
                    );
                    q.split_readings.push((a.clone(), b.clone()));
                    // Romaji is often written given name first.
                    if script(&whole) == Script::Romaji {
                        q.split_readings.push((b.clone(), a.clone()));
                        q.full_readings.push(format!("{b}{a}"));
                    }
                }
            }
            Script::Kanji => {
                let key = kanji_key(&whole);
                q.full_kanji = Some(key.clone());
                // Where does the surname end? As typed, or at every point where a known surname does.
                let mut splits: Vec<(String, String)> = Vec::new();
                if parts.len() >= 2 {
                    splits.push((kanji_key(parts[0]), kanji_key(&parts[1..].concat())));
                }
                let chars: Vec<char> = key.chars().collect();
                for cut in 1..chars.len() {
                    let family: String = chars[..cut].iter().collect();
                    if idx.id(&family).is_some_and(|id| idx.by_family_kanji.contains_key(&id)) {
                        let given: String = chars[cut..].iter().collect();
                        if !splits.contains(&(family.clone(), given.clone())) {
                            splits.push((family, given));
                        }
                    }
                }
                for (family, given) in &splits {
                    // Readings of each part: learned from the records, or the kana as typed.
                    let learned = |m: &HashMap<u32, Vec<u32>>, k: &str| -> Vec<String> {
                        idx.id(k)
                            .and_then(|id| m.get(&id))
                            .map(|v| v.iter().map(|&r| idx.s(r).to_owned()).collect())
                            .unwrap_or_default()
                    };
                    let family_readings: Vec<String> = match reading_key(family) {
                        Some(k) => vec![k],
                        None => learned(&idx.family_kanji_readings, family),
                    };
                    let given_readings: Vec<String> = match reading_key(given) {
                        Some(k) => vec![k],
                        None => learned(&idx.given_kanji_readings, given),
                    };
                    for fr in family_readings.iter().take(4) {
                        for gr in given_readings.iter().take(4) {
                            q.split_readings.push((fr.clone(), gr.clone()));
                            // Joined readings collapse a long vowel across the join, as records do.
                            let joined = super::normalize::fold_joined(fr, gr);
                            q.full_readings.push(joined);
                        }
                        if given_readings.is_empty() {
                            q.split_readings.push((fr.clone(), String::new()));
                        }
                    }
                }
                q.split_kanji = splits;
            }
        }
        q
    }

    /// The blocks of records that share the name: full reading, surname reading, surname kanji.
    fn blocks<'a>(&self, idx: &'a Index) -> Vec<&'a [u32]> {
        let mut out = Vec::new();
        for r in &self.full_readings {
            if let Some(v) = idx.id(r).and_then(|id| idx.by_full_reading.get(&id)) {
                out.push(v.as_slice());
            }
        }
        for (f, _) in &self.split_readings {
            if let Some(v) = idx.id(f).and_then(|id| idx.by_family_reading.get(&id)) {
                out.push(v.as_slice());
            }
        }
        for (f, _) in &self.split_kanji {
            if let Some(v) = idx.id(f).and_then(|id| idx.by_family_kanji.get(&id)) {
                out.push(v.as_slice());
            }
        }
        out
    }

    /// Name evidence for one person: the best of the ways the name could be read.
    /// Returns the evidence, the fields that agreed, and whether the whole name agreed exactly.
    fn score(&self, p: &Person, idx: &Index) -> (f64, Vec<Field>, bool) {
        let family_w = f64::from(p.family_weight);
        let given_w = f64::from(p.given_weight);
        let full = idx.s(p.row.full_reading);
        let family_reading = idx.s(p.row.family_reading);
        let given_reading = idx.s(p.row.given_reading);
        let family_kanji = idx.s(p.row.family_kanji);
        let given_kanji = idx.s(p.row.given_kanji);
        let mut best: (f64, Vec<Field>, bool) = (-8.0, Vec::new(), false);
        let mut consider = |s: f64, f: Vec<Field>, exact: bool| {
            if s > best.0 {
                best = (s, f, exact);
            }
        };
        for (f, g) in &self.split_readings {
            let fam = if f == family_reading {
                Some(family_w)
            } else if near(f, family_reading) {
                Some(family_w - 4.0)
            } else {
                None
            };
            let giv = if g.is_empty() {
                Some(0.0)
            } else if g == given_reading {
                Some(given_w)
            } else if near(g, given_reading) {
                Some(given_w - 4.0)
            } else {
                None
            };
            match (fam, giv) {
                (Some(a), Some(b)) if !g.is_empty() => consider(
                    a + b,
                    vec![Field::FamilyName, Field::GivenName],
                    f == family_reading && g == given_reading,
                ),
                (Some(a), Some(_)) => consider(a, vec![Field::FamilyName], false),
                (Some(a), None) => consider(a - 5.0, vec![Field::FamilyName], false),
                (None, Some(b)) if !g.is_empty() => consider(b - 6.0, vec![Field::GivenName], false),
                _ => {}
            }
        }
        for r in &self.full_readings {
            if r == full {
                consider(family_w + given_w, vec![Field::Name], true);
            } else if near(r, full) {
                consider(family_w + given_w - 4.0, vec![Field::Name], false);
            }
        }
        // Kanji as typed: the register spelling (after folding variants) is strong evidence.
        if let Some(k) = &self.full_kanji {
            let pk = format!("{family_kanji}{given_kanji}");
            if *k == pk {
                consider(family_w + given_w + 2.0, vec![Field::Name], true);
            } else {
                // Same surname in kanji, given name read alike (陽子 for 洋子): the readings above
                // already scored it; a kanji surname alone is family evidence only.
                for (f, g) in &self.split_kanji {
                    if f == family_kanji && g.is_empty() {
                        consider(family_w, vec![Field::FamilyName], false);
                    }
                }
            }
        }
        best
    }
}

#[cfg(test)]
mod search_tests {
    use super::*;
    use crate::model::MunicipalityCode;
    use crate::synth::{self, Generator};

    fn records() -> Vec<PersonRecord> {
        let mut g = Generator::new(synth::Params {
            municipalities: vec![MunicipalityCode::parse("172049").unwrap()],
            persons: 400,
            seed: 11,
            as_of: synth::default_as_of(),
        })
        .unwrap();
        let mut out: Vec<PersonRecord> = (0..400).map(|_| g.person()).collect();
        // A rare reading that only the records can teach: 小鳥遊 is read たかなし.
        out[0].family_name = "小鳥遊".into();
        out[0].family_name_kana = "タカナシ".into();
        out[0].given_name = "花子".into();
        out[0].given_name_kana = "ハナコ".into();
        out[0].birth_date = NaiveDate::from_ymd_opt(1938, 4, 1).unwrap();
        out[0].sex = Sex::Female;
        // Twins: same name reading, same birth date.
        out[1].family_name_kana = "ヤマダ".into();
        out[1].given_name_kana = "ハル".into();
        out[2].family_name_kana = "ヤマダ".into();
        out[2].given_name_kana = "ハル".into();
        out[2].birth_date = out[1].birth_date;
        out[2].sex = out[1].sex;
        out[2].municipality = out[1].municipality;
        out
    }

    fn today() -> NaiveDate {
        synth::default_as_of()
    }

    fn q(name: &str, birth: &str) -> Query {
        Query { name: Some(name.into()), birth_date: Some(birth.into()), ..Query::default() }
    }

    #[test]
    fn an_index_within_some_municipalities_holds_no_one_else_and_keeps_snapshot_positions() {
        let mut all = records();
        let suzu = MunicipalityCode::parse("172057").unwrap();
        for r in all.iter_mut().skip(1).step_by(2) {
            r.municipality = suzu;
        }
        let idx = Index::from_section_within(section_of(&all), |code| code == "172049");
        assert_eq!(idx.len(), all.len().div_ceil(2));
        for (position, r) in all.iter().enumerate() {
            let found = idx.position_of(r.person_id.as_str());
            if r.municipality == suzu {
                assert_eq!(found, None, "a person outside the municipalities is not even held");
            } else {
                assert_eq!(found, Some(position as u32), "where the record is in the snapshot");
            }
        }
        let someone_of_suzu = &all[1];
        let q = Query {
            insurer_number: Some(someone_of_suzu.card_insurer_number.as_str().to_owned()),
            insured_number: Some(someone_of_suzu.insured_number.as_str().to_owned()),
            birth_date: Some(someone_of_suzu.birth_date.to_string()),
            ..Default::default()
        };
        assert!(idx.search(&q, synth::default_as_of()).unwrap().candidates.is_empty());
    }

    #[test]
    fn a_rare_reading_learned_from_the_records_meets_kana_and_kanji() {
        let idx = Index::build(&records());
        for name in ["小鳥遊花子", "たかなし はなこ", "takanashi hanako", "ﾀｶﾅｼﾊﾅｺ", "小鳥遊 はなこ"]
        {
            let out = idx.search(&q(name, "昭和13年4月1日"), today()).unwrap();
            assert_eq!(out.candidates[0].record, 0, "{name}");
            assert_eq!(out.verdict, Verdict::Likely, "{name}");
        }
    }

    #[test]
    fn nobody_is_offered_when_nobody_fits_and_twins_are_called_ambiguous() {
        let r = records();
        let idx = Index::build(&r);
        let out = idx.search(&q("ぜんぜんちがう なまえ", "1901-01-01"), today()).unwrap();
        assert_eq!(out.verdict, Verdict::NotFound);
        assert!(out.candidates.is_empty());
        let twins = idx.search(&q("やまだ はる", &r[1].birth_date.to_string()), today()).unwrap();
        assert_eq!(twins.verdict, Verdict::Ambiguous, "{twins:?}");
        assert!(twins.candidates.len() >= 2);
    }

    #[test]
    fn searches_that_would_browse_are_refused() {
        let idx = Index::build(&records());
        let only_name = Query { name: Some("やまだ".into()), ..Query::default() };
        assert_eq!(idx.search(&only_name, today()), Err(QueryError::NotEnough));
        let card = Query { insured_number: Some("0000000001".into()), ..Query::default() };
        assert_eq!(idx.search(&card, today()), Err(QueryError::CardIncomplete));
    }

    #[test]
    fn the_card_route_finds_exactly_the_card_holder() {
        let r = records();
        let idx = Index::build(&r);
        let p = &r[5];
        let card = Query {
            insurer_number: Some(p.card_insurer_number.to_string()),
            insured_number: Some(format!(" {} ", p.insured_number.as_str())),
            birth_date: Some(p.birth_date.format("%Y/%m/%d").to_string()),
            ..Query::default()
        };
        let out = idx.search(&card, today()).unwrap();
        assert_eq!(out.verdict, Verdict::Likely);
        assert_eq!(out.candidates.len(), 1);
        assert_eq!(out.candidates[0].record, 5);
    }
}
