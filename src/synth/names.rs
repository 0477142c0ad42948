//! Name tables for the generator: surnames with readings, frequency weights and variant kanji,
//! and given names of the generation born 1905–1965 (sources in each file's header).

use std::sync::OnceLock;

use rand::Rng;
use rand::distributions::{Distribution, WeightedIndex};

use crate::model::Sex;

const SURNAMES: &str = include_str!("../data/surnames.tsv");
const GIVEN_NAMES: &str = include_str!("../data/given_names.tsv");

#[derive(Debug)]
pub struct Surname {
    pub kanji: String,
    pub kana: String,
    pub variants: Vec<String>,
}

#[derive(Debug)]
pub struct GivenName {
    pub written: String,
    pub kana: String,
    /// Written in kana only (トメ, はる): common for women born before about 1935.
    pub kana_only: bool,
}

pub struct Names {
    pub surnames: Vec<Surname>,
    surname_weights: WeightedIndex<u32>,
    given: [Vec<GivenName>; 2],
    /// Weights for people born before 1935 and after, per sex.
    given_weights_old: [WeightedIndex<f64>; 2],
    given_weights_new: [WeightedIndex<f64>; 2],
}

fn data_rows<'a>(text: &'a str, header: &str) -> impl Iterator<Item = Vec<&'a str>> {
    let header = header.to_owned();
    text.lines().filter(move |l| !l.starts_with('#') && *l != header).map(|l| l.split('\t').collect())
}

fn is_kana_char(c: char) -> bool {
    ('ぁ'..='ゖ').contains(&c) || ('ァ'..='ヶ').contains(&c) || c == 'ー'
}

fn load() -> Names {
    let mut surnames = Vec::new();
    let mut weights = Vec::new();
    for f in data_rows(SURNAMES, "kanji\tkana\tweight\tvariants") {
        // Compiled-in data, checked by tests: a bad row is a build defect.
        assert_eq!(f.len(), 4, "surnames.tsv: {f:?}");
        surnames.push(Surname {
            kanji: f[0].to_owned(),
            kana: f[1].to_owned(),
            variants: f[3].split(',').filter(|v| !v.is_empty()).map(str::to_owned).collect(),
        });
        weights.push(f[2].parse::<u32>().expect("surnames.tsv weight"));
    }
    let mut given: [Vec<GivenName>; 2] = [Vec::new(), Vec::new()];
    let mut old: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let mut new: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for f in data_rows(GIVEN_NAMES, "sex\twritten\tkana\tweight") {
        assert_eq!(f.len(), 4, "given_names.tsv: {f:?}");
        let s = usize::from(f[0] == "2");
        let w: f64 = f[3].parse().expect("given_names.tsv weight");
        // Names with any kana in them (トメ, トシ子) belong mostly to the older generation.
        let has_kana = f[1].chars().any(is_kana_char);
        old[s].push(if has_kana { w * 3.0 } else { w });
        new[s].push(if has_kana { w * 0.1 } else { w });
        given[s].push(GivenName {
            written: f[1].to_owned(),
            kana: f[2].to_owned(),
            kana_only: f[1].chars().all(is_kana_char),
        });
    }
    let wi = |w: &Vec<f64>| WeightedIndex::new(w).expect("given-name weights");
    Names {
        surnames,
        surname_weights: WeightedIndex::new(weights).expect("surname weights"),
        given_weights_old: [wi(&old[0]), wi(&old[1])],
        given_weights_new: [wi(&new[0]), wi(&new[1])],
        given,
    }
}

pub fn names() -> &'static Names {
    static NAMES: OnceLock<Names> = OnceLock::new();
    NAMES.get_or_init(load)
}

impl Names {
    pub fn surname(&self, rng: &mut impl Rng) -> &Surname {
        &self.surnames[self.surname_weights.sample(rng)]
    }

    pub fn given(&self, rng: &mut impl Rng, sex: Sex, birth_year: i32) -> &GivenName {
        let s = usize::from(sex == Sex::Female);
        let i = if birth_year < 1935 {
            self.given_weights_old[s].sample(rng)
        } else {
            self.given_weights_new[s].sample(rng)
        };
        &self.given[s][i]
    }

    /// Other written forms of a given-name reading.
    pub fn homophones(&self, sex: Sex, kana: &str, except: &str) -> Vec<&str> {
        let s = usize::from(sex == Sex::Female);
        self.given[s].iter().filter(|g| g.kana == kana && g.written != except).map(|g| g.written.as_str()).collect()
    }

    /// The standard form of a surname written with a variant kanji, if it is one.
    pub fn standard_of(&self, written: &str) -> Option<&Surname> {
        self.surnames.iter().find(|s| s.kanji == written || s.variants.iter().any(|v| v == written))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::kana::is_katakana;

    #[test]
    fn tables_load_with_readings_and_variants() {
        let n = names();
        assert!(n.surnames.len() >= 200);
        assert!(n.given[0].len() >= 150 && n.given[1].len() >= 150);
        for s in &n.surnames {
            assert!(is_katakana(&s.kana), "{}", s.kanji);
        }
        for g in n.given.iter().flatten() {
            assert!(is_katakana(&g.kana), "{}", g.written);
        }
        let takahashi = n.standard_of("髙橋").unwrap();
        assert_eq!(takahashi.kanji, "高橋");
        assert_eq!(n.standard_of("小鳥遊").unwrap().kana, "タカナシ");
        for v in ["齋藤", "渡邉", "山﨑", "𠮷田", "嶋田", "澤田", "濵田"] {
            assert!(n.standard_of(v).is_some(), "{v}");
        }
    }
}
