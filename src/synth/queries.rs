//! Noisy lookups with their right answers, for measuring the matcher honestly: what tired staff
//! type after hearing a name (every script, variant kanji, kana variants, typos, 和暦 dates,
//! missing fields), and people who are not in the region at all.

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};

use chrono::{Datelike, NaiveDate};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde::Serialize;

use crate::model::kana;
use crate::model::wareki::to_wareki;
use crate::model::{PersonRecord, Sex};
use crate::region;

use super::names::names;

/// Which person a query should find.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Expected {
    pub insurer_number: String,
    pub insured_number: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Query {
    pub id: String,
    /// "four_info" (氏名, 生年月日, 性別, 保険者名 or address) or "card".
    pub route: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub birth_date: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sex: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub insurer_or_address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub insurer_number: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub insured_number: Option<String>,
    /// None: the person is not in the region; the right answer is "nobody".
    pub expected: Option<Expected>,
    /// What was done to the true values, for accuracy reports broken down by kind.
    pub noise: Vec<&'static str>,
}

impl Query {
    /// The search as the matcher and the API take it.
    pub fn as_search(&self) -> crate::search::matcher::Query {
        crate::search::matcher::Query {
            name: self.name.clone(),
            birth_date: self.birth_date.clone(),
            sex: self.sex.clone(),
            insurer_or_address: self.insurer_or_address.clone(),
            insurer_number: self.insurer_number.clone(),
            insured_number: self.insured_number.clone(),
        }
    }
}

/// Share of queries about people absent from the region.
const ABSENT_SHARE: f64 = 0.15;
/// Share of name queries that give only the surname's reading, the birth date and the sex.
const SURNAME_ONLY_SHARE: f64 = 0.08;
/// Share of present-person queries that use the card route.
const CARD_SHARE: f64 = 0.2;

/// Chooses which persons of a population become queries, and makes them.
pub struct QueryMaker {
    rng: ChaCha20Rng,
    wanted: HashSet<u64>,
    seen: HashSet<u64>,
    queries: Vec<Query>,
    absent: u64,
}

fn identity_hash(family_kana: &str, given_kana: &str, birth: NaiveDate) -> u64 {
    let mut h = DefaultHasher::new();
    (family_kana, given_kana, birth).hash(&mut h);
    h.finish()
}

impl QueryMaker {
    pub fn new(seed: u64, persons: u64, count: u64) -> QueryMaker {
        let mut rng = ChaCha20Rng::seed_from_u64(seed ^ 0x5155_4552_5953_0001);
        let absent = ((count as f64) * ABSENT_SHARE).round() as u64;
        let present = (count - absent).min(persons);
        let mut wanted = HashSet::new();
        while (wanted.len() as u64) < present {
            wanted.insert(rng.gen_range(0..persons));
        }
        QueryMaker { rng, wanted, seen: HashSet::new(), queries: Vec::new(), absent: count - present }
    }

    /// Called with every person of the population, in order.
    pub fn observe(&mut self, index: u64, p: &PersonRecord) {
        self.seen.insert(identity_hash(&p.family_name_kana, &p.given_name_kana, p.birth_date));
        if self.wanted.contains(&index) {
            let expected = Expected {
                insurer_number: p.insurer_number.to_string(),
                insured_number: p.insured_number.as_str().into(),
            };
            let q = if self.rng.gen_bool(CARD_SHARE) {
                self.card(p, Some(expected))
            } else {
                self.four_info(p, Some(expected))
            };
            self.queries.push(q);
        }
    }

    /// Adds the absent people (made by `absent`, a generator on another seed, skipping anyone who
    /// happens to share a reading and birth date with a real person) and returns all queries in a
    /// shuffled, deterministic order.
    pub fn finish(mut self, mut absent: impl FnMut() -> PersonRecord) -> Vec<Query> {
        let mut made = 0;
        while made < self.absent {
            let p = absent();
            if self.seen.contains(&identity_hash(&p.family_name_kana, &p.given_name_kana, p.birth_date)) {
                continue;
            }
            let q = if self.rng.gen_bool(CARD_SHARE) { self.card(&p, None) } else { self.four_info(&p, None) };
            self.queries.push(q);
            made += 1;
        }
        // Population order, then the absent ones: deterministic, then shuffled so that a reader of
        // the file cannot tell the absent ones by position.
        let mut queries = self.queries;
        queries.shuffle(&mut self.rng);
        for (i, q) in queries.iter_mut().enumerate() {
            q.id = format!("q{:06}", i + 1);
        }
        queries
    }

    fn card(&mut self, p: &PersonRecord, expected: Option<Expected>) -> Query {
        let mut noise = Vec::new();
        let insurer = if self.rng.gen_bool(0.6) {
            noise.push("card_insurer_number");
            p.card_insurer_number.to_string()
        } else {
            p.insurer_number.to_string()
        };
        let mut insured = if expected.is_some() {
            p.insured_number.as_str().to_owned()
        } else {
            // Not issued in this region: real insured numbers here start with 00 or H.
            format!("99{:08}", self.rng.gen_range(0..100_000_000))
        };
        match self.rng.gen_range(0..10) {
            0 | 1 => {
                insured = to_fullwidth_digits(&insured);
                noise.push("fullwidth_digits");
            }
            2 => {
                insured = format!("{} {}", &insured[..5], &insured[5..]);
                noise.push("spaced_number");
            }
            _ => {}
        }
        let (birth, birth_noise) = self.birth(p.birth_date, true);
        noise.extend(birth_noise);
        Query {
            id: String::new(),
            route: "card",
            name: None,
            birth_date: birth,
            sex: None,
            insurer_or_address: None,
            insurer_number: Some(insurer),
            insured_number: Some(insured),
            expected,
            noise,
        }
    }

    fn four_info(&mut self, p: &PersonRecord, expected: Option<Expected>) -> Query {
        let mut noise = Vec::new();
        if self.rng.gen_bool(SURNAME_ONLY_SHARE) {
            // A neighbour knows the family name, the birthday and whether it is a man or woman.
            noise.push("surname_reading_only");
            let name = if self.rng.gen_bool(0.5) {
                kana::katakana_to_hiragana(&p.family_name_kana)
            } else {
                p.family_name_kana.clone()
            };
            let (birth, birth_noise) = self.birth(p.birth_date, true);
            noise.extend(birth_noise);
            return Query {
                id: String::new(),
                route: "four_info",
                name: Some(name),
                birth_date: birth,
                sex: Some(p.sex.kanji().to_owned()),
                insurer_or_address: None,
                insurer_number: None,
                insured_number: None,
                expected,
                noise,
            };
        }
        let name = self.name(p, &mut noise);
        let (birth, birth_noise) = self.birth(p.birth_date, false);
        noise.extend(birth_noise);
        let sex = self.sex(p.sex, &mut noise);
        let place = self.place(p, &mut noise);
        Query {
            id: String::new(),
            route: "four_info",
            name: Some(name),
            birth_date: birth,
            sex,
            insurer_or_address: place,
            insurer_number: None,
            insured_number: None,
            expected,
            noise,
        }
    }

    fn name(&mut self, p: &PersonRecord, noise: &mut Vec<&'static str>) -> String {
        let rng = &mut self.rng;
        let (mut family_kana, mut given_kana) = (p.family_name_kana.clone(), p.given_name_kana.clone());
        // Kana-level noise first, so every kana script below carries it.
        if rng.gen_bool(0.15)
            && let Some((f, g)) = kana_variant(rng, &family_kana, &given_kana)
        {
            (family_kana, given_kana) = (f, g);
            noise.push("kana_variant");
        }
        if rng.gen_bool(0.10) {
            if rng.gen_bool(0.5) {
                family_kana = typo(rng, &family_kana)
            } else {
                given_kana = typo(rng, &given_kana)
            }
            noise.push("typo");
        }
        let sep = match rng.gen_range(0..10) {
            0..=4 => {
                noise.push("no_space");
                ""
            }
            5..=6 => "\u{3000}",
            _ => " ",
        };
        let form = rng.gen_range(0..100);
        let kanji_ok = !noise.contains(&"typo") && !noise.contains(&"kana_variant");
        match form {
            0..=29 if kanji_ok => {
                noise.push("kanji");
                format!("{}{sep}{}", p.family_name, p.given_name)
            }
            30..=39 if kanji_ok => match variant_swap(rng, &p.family_name) {
                Some(v) => {
                    noise.push("variant_kanji");
                    format!("{v}{sep}{}", p.given_name)
                }
                None => {
                    noise.push("kanji");
                    format!("{}{sep}{}", p.family_name, p.given_name)
                }
            },
            40..=44 if kanji_ok => match homophone_given(rng, p) {
                Some(g) => {
                    noise.push("homophone_given_name");
                    format!("{}{sep}{g}", p.family_name)
                }
                None => {
                    noise.push("kanji");
                    format!("{}{sep}{}", p.family_name, p.given_name)
                }
            },
            45..=51 => {
                noise.push("kanji_family_kana_given");
                format!("{}{sep}{}", p.family_name, kana::katakana_to_hiragana(&given_kana))
            }
            52..=71 => {
                noise.push("hiragana");
                format!("{}{sep}{}", kana::katakana_to_hiragana(&family_kana), kana::katakana_to_hiragana(&given_kana))
            }
            72..=86 => {
                noise.push("katakana");
                format!("{family_kana}{sep}{given_kana}")
            }
            87..=91 => {
                noise.push("halfwidth_kana");
                kana::fullwidth_to_halfwidth(&format!(
                    "{family_kana}{}{given_kana}",
                    if sep.is_empty() { "" } else { " " }
                ))
            }
            _ => {
                noise.push("romaji");
                let f = romaji_variant(rng, &kana::to_romaji(&family_kana));
                let g = romaji_variant(rng, &kana::to_romaji(&given_kana));
                if rng.gen_bool(0.3) {
                    noise.push("given_name_first");
                    format!("{} {}", capitalize(&g), capitalize(&f))
                } else {
                    format!("{f}{}{g}", if sep.is_empty() { "" } else { " " })
                }
            }
        }
    }

    fn birth(&mut self, d: NaiveDate, card: bool) -> (Option<String>, Vec<&'static str>) {
        let rng = &mut self.rng;
        if !card && rng.gen_bool(0.03) {
            return (None, vec!["missing_birth_date"]);
        }
        let Some(w) = to_wareki(d) else {
            return (Some(d.to_string()), vec!["western"]);
        };
        let mut noise = Vec::new();
        let (mut m, mut day) = (d.month(), d.day());
        if rng.gen_bool(0.04) && day <= 12 && day != m {
            std::mem::swap(&mut m, &mut day);
            noise.push("day_month_swapped");
        }
        let era = w.era;
        let y = w.year;
        let text = match rng.gen_range(0..100) {
            0..=14 => {
                noise.push("western");
                format!("{}-{m:02}-{day:02}", d.year())
            }
            15..=24 => {
                noise.push("western_slash");
                format!("{}/{m}/{day}", d.year())
            }
            25..=44 => {
                noise.push("wareki_kanji");
                let year = if y == 1 { "元".to_owned() } else { y.to_string() };
                format!("{}{year}年{m}月{day}日", era.kanji())
            }
            45..=54 => {
                noise.push("wareki_short");
                format!("{}{y}.{m}.{day}", &era.kanji()[..3])
            }
            55..=69 => {
                noise.push("wareki_letter");
                let sep = if rng.gen_bool(0.5) { "." } else { "/" };
                format!("{}{y}{sep}{m}{sep}{day}", era.letter())
            }
            70..=79 => {
                noise.push("gyymmdd");
                format!("{}{y:02}{m:02}{day:02}", era.code())
            }
            80..=89 => {
                noise.push("kanji_numerals");
                let year = if y == 1 { "元".to_owned() } else { kanji_number(y) };
                format!("{}{year}年{}月{}日", era.kanji(), kanji_number(m), kanji_number(day))
            }
            _ => {
                noise.push("no_era");
                format!("{y}年{m}月{day}日")
            }
        };
        (Some(text), noise)
    }

    fn sex(&mut self, s: Sex, noise: &mut Vec<&'static str>) -> Option<String> {
        let male = s == Sex::Male;
        let text = match self.rng.gen_range(0..20) {
            0..=8 => s.kanji().to_owned(),
            9..=11 => format!("{}性", s.kanji()),
            12..=13 => s.code().to_owned(),
            14 => (if male { "M" } else { "F" }).to_owned(),
            _ => {
                noise.push("missing_sex");
                return None;
            }
        };
        Some(text)
    }

    fn place(&mut self, p: &PersonRecord, noise: &mut Vec<&'static str>) -> Option<String> {
        let muni = region::lookup(p.municipality)?;
        let rng = &mut self.rng;
        let text = match rng.gen_range(0..20) {
            0..=5 => {
                noise.push("insurer_name");
                muni.insurer_name().to_owned()
            }
            6..=10 => {
                noise.push("municipality_name");
                muni.name.clone()
            }
            11..=12 => {
                noise.push("municipality_name_short");
                let n: Vec<char> = muni.name.chars().collect();
                n[..n.len().saturating_sub(1).max(1)].iter().collect()
            }
            13..=15 => {
                noise.push("address_part");
                muni.towns.iter().find(|t| p.address.contains(t.as_str())).cloned().unwrap_or_else(|| muni.name.clone())
            }
            _ => {
                noise.push("missing_place");
                return None;
            }
        };
        Some(text)
    }
}

fn to_fullwidth_digits(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_digit() { char::from_u32(c as u32 + 0xFEE0).unwrap_or(c) } else { c }).collect()
}

fn kanji_number(n: u32) -> String {
    const D: [&str; 10] = ["〇", "一", "二", "三", "四", "五", "六", "七", "八", "九"];
    match n {
        0..=9 => D[n as usize].to_owned(),
        10..=99 => {
            let (t, o) = (n / 10, n % 10);
            let tens = if t == 1 { "十".to_owned() } else { format!("{}十", D[t as usize]) };
            if o == 0 { tens } else { format!("{tens}{}", D[o as usize]) }
        }
        _ => n.to_string(),
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// One of the ways people write long vowels in romaji: satou, sato, satoh, satō.
fn romaji_variant(rng: &mut impl Rng, r: &str) -> String {
    match rng.gen_range(0..4) {
        0 => r.to_owned(),
        1 => r.replace("ou", "o").replace("uu", "u"),
        2 => r.replace("ou", "oh").replace("uu", "u"),
        _ => r.replace("ou", "ō").replace("oo", "ō").replace("uu", "ū"),
    }
}

/// A variant kanji for a standard surname, or the standard for a variant.
fn variant_swap(rng: &mut impl Rng, family: &str) -> Option<String> {
    let s = names().standard_of(family)?;
    if s.kanji != family {
        return Some(s.kanji.clone());
    }
    s.variants.choose(rng).cloned()
}

/// Another written form of the same given-name reading (洋子 for 陽子): what a listener writes.
fn homophone_given(rng: &mut impl Rng, p: &PersonRecord) -> Option<String> {
    names().homophones(p.sex, &p.given_name_kana, &p.given_name).choose(rng).map(|s| (*s).to_owned())
}

/// Kana spellings that differ from the register's but sound alike.
fn kana_variant(rng: &mut impl Rng, family: &str, given: &str) -> Option<(String, String)> {
    const SWAPS: [(&str, &str); 11] = [
        ("ヅ", "ズ"),
        ("ズ", "ヅ"),
        ("ヂ", "ジ"),
        ("ジ", "ヂ"),
        ("ヴ", "ブ"),
        ("オウ", "オー"),
        ("ユウ", "ユー"),
        ("ュウ", "ュー"),
        ("ョ", "ヨ"),
        ("ュ", "ユ"),
        ("ャ", "ヤ"),
    ];
    let mut options: Vec<(String, String)> = Vec::new();
    for (from, to) in SWAPS {
        if family.contains(from) {
            options.push((family.replacen(from, to, 1), given.to_owned()));
        }
        if given.contains(from) {
            options.push((family.to_owned(), given.replacen(from, to, 1)));
        }
    }
    if family.ends_with("オウ") || family.contains("オウ") {
        options.push((family.replacen("オウ", "オオ", 1), given.to_owned()));
    }
    options.into_iter().filter(|(f, g)| f != family || g != given).collect::<Vec<_>>().choose(rng).cloned()
}

/// One slip of the finger or the ear: a kana replaced by a neighbour, dropped, or two swapped.
fn typo(rng: &mut impl Rng, s: &str) -> String {
    let mut chars: Vec<char> = s.chars().collect();
    if chars.len() < 2 {
        return s.to_owned();
    }
    let i = rng.gen_range(0..chars.len());
    match rng.gen_range(0..3) {
        0 => {
            // A neighbour in the kana table: the same consonant with another vowel, as a tired
            // ear or thumb gets it wrong (タ → テ, ミ → ム).
            const ROWS: [&str; 15] = [
                "アイウエオ",
                "カキクケコ",
                "サシスセソ",
                "タチツテト",
                "ナニヌネノ",
                "ハヒフヘホ",
                "マミムメモ",
                "ヤユヨ",
                "ラリルレロ",
                "ワヲ",
                "ガギグゲゴ",
                "ザジズゼゾ",
                "ダヂヅデド",
                "バビブベボ",
                "パピプペポ",
            ];
            let c = chars[i];
            if let Some(row) = ROWS.iter().find(|r| r.contains(c)) {
                let others: Vec<char> = row.chars().filter(|&x| x != c).collect();
                chars[i] = *others.choose(rng).unwrap_or(&c);
            } else {
                chars.remove(i);
            }
        }
        1 => {
            chars.remove(i);
        }
        _ => {
            let j = if i + 1 < chars.len() { i + 1 } else { i - 1 };
            chars.swap(i, j);
        }
    }
    chars.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kanji_numbers_read_as_people_write_them() {
        assert_eq!(kanji_number(15), "十五");
        assert_eq!(kanji_number(3), "三");
        assert_eq!(kanji_number(20), "二十");
        assert_eq!(kanji_number(31), "三十一");
    }

    #[test]
    fn romaji_long_vowels_vary() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let forms: HashSet<String> = (0..50).map(|_| romaji_variant(&mut rng, "satou")).collect();
        assert_eq!(forms, ["satou", "sato", "satoh", "satō"].into_iter().map(String::from).collect());
    }
}
