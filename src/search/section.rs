//! The search section of a snapshot: per person, only what finding them needs (reading and kanji
//! keys, birth date, sex, place, card numbers, display name), with every string stored once in a
//! table. Built by the central with the snapshot, encrypted with it, and decoded by a node at
//! activation without decoding the full records: fast, and small in memory.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::normalize::{kanji_key, reading_key};
use crate::model::PersonRecord;
use crate::region;

/// One person. Strings are indexes into `SearchSection::strings`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Row {
    pub family_reading: u32,
    pub given_reading: u32,
    pub full_reading: u32,
    pub family_kanji: u32,
    pub given_kanji: u32,
    /// As registered, for display (variant kanji kept).
    pub family_name: u32,
    pub given_name: u32,
    pub family_kana: u32,
    pub given_kana: u32,
    /// Days since 0001-01-01 (chrono's `num_days_from_ce`).
    pub birth: i32,
    /// 1 男, 2 女.
    pub sex: u8,
    pub municipality: u32,
    /// The 町名 of the address as a kanji key, or `u32::MAX`.
    pub town: u32,
    pub insurer: u32,
    pub card_insurer: u32,
    /// Unique per person, so kept inline rather than in the string table.
    pub insured: [u8; 10],
    pub person_id: [u8; 16],
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchSection {
    pub strings: Vec<String>,
    pub rows: Vec<Row>,
}

/// Builds a section record by record, folding each distinct spelling once.
#[derive(Default)]
pub struct SectionBuilder {
    section: SearchSection,
    ids: HashMap<String, u32>,
    readings: HashMap<String, u32>,
    kanji: HashMap<String, u32>,
}

impl SectionBuilder {
    pub fn new() -> Self {
        SectionBuilder::default()
    }

    fn id(&mut self, s: &str) -> u32 {
        if let Some(&i) = self.ids.get(s) {
            return i;
        }
        let i = self.section.strings.len() as u32;
        self.section.strings.push(s.to_owned());
        self.ids.insert(s.to_owned(), i);
        i
    }

    fn reading(&mut self, kana: &str) -> u32 {
        if let Some(&i) = self.readings.get(kana) {
            return i;
        }
        let key = reading_key(kana).unwrap_or_default();
        let i = self.id(&key);
        self.readings.insert(kana.to_owned(), i);
        i
    }

    fn kanji(&mut self, name: &str) -> u32 {
        if let Some(&i) = self.kanji.get(name) {
            return i;
        }
        let key = kanji_key(name);
        let i = self.id(&key);
        self.kanji.insert(name.to_owned(), i);
        i
    }

    pub fn push(&mut self, r: &PersonRecord) {
        let town = region::lookup(r.municipality)
            .and_then(|m| m.towns.iter().find(|t| r.address.contains(t.as_str())))
            .map_or(u32::MAX, |t| self.kanji(t));
        let row = Row {
            family_reading: self.reading(&r.family_name_kana),
            given_reading: self.reading(&r.given_name_kana),
            // The whole name folded as one, as a name typed without a space is: a long vowel
            // across the join (ハラダ アケミ → haradakemi) collapses the same way.
            full_reading: self.reading(&format!("{}{}", r.family_name_kana, r.given_name_kana)),
            family_kanji: self.kanji(&r.family_name),
            given_kanji: self.kanji(&r.given_name),
            family_name: self.id(&r.family_name),
            given_name: self.id(&r.given_name),
            family_kana: self.id(&r.family_name_kana),
            given_kana: self.id(&r.given_name_kana),
            birth: chrono::Datelike::num_days_from_ce(&r.birth_date),
            sex: if r.sex == crate::model::Sex::Male { 1 } else { 2 },
            municipality: self.id(r.municipality.as_str()),
            town,
            insurer: self.id(r.insurer_number.as_str()),
            card_insurer: self.id(r.card_insurer_number.as_str()),
            insured: r.insured_number.as_str().as_bytes().try_into().expect("被保険者番号 is 10 ASCII characters"),
            person_id: hex::decode(r.person_id.as_str())
                .ok()
                .and_then(|b| b.try_into().ok())
                .expect("a person id is 32 hex digits"),
        };
        self.section.rows.push(row);
    }

    pub fn finish(self) -> SearchSection {
        self.section
    }
}

/// The section of a list of records (for tests and for nodes given records directly).
pub fn section_of(records: &[PersonRecord]) -> SearchSection {
    let mut b = SectionBuilder::new();
    for r in records {
        b.push(r);
    }
    b.finish()
}
