//! The built-in municipality table (石川県, 高知県 and Tokyo's 23 wards) and regions: the sets of
//! municipalities a snapshot covers or a node is provisioned for.
//!
//! The table is data (`src/data/municipalities.tsv`, sources stated in its header), parsed once on
//! first use; a test checks every code's check digit so a typo cannot slip in.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::OnceLock;

use crate::model::{InsurerNumber, MunicipalityCode};

const TABLE: &str = include_str!("data/municipalities.tsv");

#[derive(Debug, Clone)]
pub struct InsurerUnion {
    pub name: String,
    pub kana: String,
    pub number: InsurerNumber,
}

#[derive(Debug, Clone)]
pub struct Municipality {
    pub code: MunicipalityCode,
    pub name: String,
    pub kana: String,
    pub prefecture: String,
    /// The 広域連合 or 一部事務組合 that is the care-insurance insurer, where there is one.
    pub union: Option<InsurerUnion>,
    pub towns: Vec<String>,
}

impl Municipality {
    /// The municipality's own 保険者番号 (its first five digits and a mod-10 check digit): what
    /// the card shows as 証記載保険者番号.
    pub fn own_insurer_number(&self) -> InsurerNumber {
        // The first five digits of a valid municipality code are five ASCII digits.
        InsurerNumber::from_base(self.code.first5()).expect("five digits")
    }

    /// The 保険者番号 that pays: the union's where there is one.
    pub fn insurer_number(&self) -> InsurerNumber {
        match &self.union {
            Some(u) => u.number.clone(),
            None => self.own_insurer_number(),
        }
    }

    pub fn insurer_name(&self) -> &str {
        self.union.as_ref().map_or(&self.name, |u| &u.name)
    }
}

fn parse_table() -> Vec<Municipality> {
    let mut rows = Vec::new();
    for line in TABLE.lines().filter(|l| !l.starts_with('#') && !l.starts_with("code\t")) {
        let f: Vec<&str> = line.split('\t').collect();
        // The table is compiled in and checked by tests; a malformed row is a build defect.
        assert_eq!(f.len(), 8, "municipalities.tsv row: {line}");
        let code = MunicipalityCode::parse(f[0]).expect("municipalities.tsv code");
        let union = (!f[4].is_empty()).then(|| InsurerUnion {
            name: f[4].to_owned(),
            kana: f[5].to_owned(),
            number: InsurerNumber::from_base(f[6]).expect("municipalities.tsv union base"),
        });
        rows.push(Municipality {
            code,
            name: f[1].to_owned(),
            kana: f[2].to_owned(),
            prefecture: f[3].to_owned(),
            union,
            towns: f[7].split('|').map(str::to_owned).collect(),
        });
    }
    rows
}

/// Every municipality the crate knows, sorted by code.
pub fn municipalities() -> &'static [Municipality] {
    static TABLE: OnceLock<Vec<Municipality>> = OnceLock::new();
    TABLE.get_or_init(parse_table)
}

pub fn lookup(code: MunicipalityCode) -> Option<&'static Municipality> {
    let all = municipalities();
    all.binary_search_by(|m| m.code.cmp(&code)).ok().map(|i| &all[i])
}

/// A set of municipalities, or whole prefectures: what a node is provisioned to hold.
/// Written as a comma-separated list of 6-digit municipality codes and 2-digit prefecture codes
/// ("17" = all of 石川県).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    pub prefectures: BTreeSet<String>,
    pub municipalities: BTreeSet<MunicipalityCode>,
}

#[derive(Debug, thiserror::Error)]
pub enum RegionError {
    #[error("地域の指定が空です。市区町村コード（6桁）か都道府県コード（2桁）をカンマで区切って指定してください")]
    Empty,
    #[error("地域の指定「{0}」が読めません: 市区町村コード（6桁）か都道府県コード（2桁）を指定してください")]
    BadPart(String),
    #[error(transparent)]
    Code(#[from] crate::model::IdError),
}

impl Region {
    pub fn parse(s: &str) -> Result<Region, RegionError> {
        let mut region = Region { prefectures: BTreeSet::new(), municipalities: BTreeSet::new() };
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part.len() {
                2 if part.bytes().all(|b| b.is_ascii_digit()) && part != "00" && part <= "47" => {
                    region.prefectures.insert(part.to_owned());
                }
                6 => {
                    region.municipalities.insert(MunicipalityCode::parse(part)?);
                }
                _ => return Err(RegionError::BadPart(part.to_owned())),
            }
        }
        if region.prefectures.is_empty() && region.municipalities.is_empty() {
            return Err(RegionError::Empty);
        }
        Ok(region)
    }

    pub fn contains(&self, code: MunicipalityCode) -> bool {
        self.prefectures.contains(code.prefecture()) || self.municipalities.contains(&code)
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<&str> = self
            .prefectures
            .iter()
            .map(String::as_str)
            .chain(self.municipalities.iter().map(MunicipalityCode::as_str))
            .collect();
        f.write_str(&parts.join(","))
    }
}

/// "輪島市, 珠洲市" for display; unknown codes are shown as codes.
pub fn names(codes: &[MunicipalityCode]) -> String {
    codes.iter().map(|c| lookup(*c).map_or_else(|| c.to_string(), |m| m.name.clone())).collect::<Vec<_>>().join("、")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_covers_ishikawa_kochi_and_the_23_wards_with_kana() {
        let all = municipalities();
        let count = |p: &str| all.iter().filter(|m| m.prefecture == p).count();
        assert_eq!(count("石川県"), 19);
        assert_eq!(count("高知県"), 34);
        assert_eq!(count("東京都"), 23);
        for m in all {
            assert!(
                !m.kana.is_empty() && m.kana.chars().all(|c| ('ァ'..='ヶ').contains(&c) || c == 'ー'),
                "{}",
                m.name
            );
            assert!(!m.towns.is_empty(), "{}", m.name);
            assert!(m.insurer_number().check_ok());
        }
        assert!(all.windows(2).all(|w| w[0].code < w[1].code), "sorted and unique");
    }

    #[test]
    fn published_codes_have_their_names() {
        let name = |c: &str| lookup(MunicipalityCode::parse(c).unwrap()).unwrap().name.clone();
        assert_eq!(name("131016"), "千代田区");
        assert_eq!(name("172049"), "輪島市");
        assert_eq!(name("172057"), "珠洲市");
        let chiyoda = lookup(MunicipalityCode::parse("131016").unwrap()).unwrap();
        assert_eq!(chiyoda.insurer_number().as_str(), "131011");
    }

    #[test]
    fn unions_pay_while_the_card_shows_the_municipality() {
        let wajima = lookup(MunicipalityCode::parse("172049").unwrap()).unwrap();
        assert!(wajima.union.is_some());
        assert_ne!(wajima.insurer_number(), wajima.own_insurer_number());
        assert!(wajima.own_insurer_number().as_str().starts_with("17204"));
    }

    #[test]
    fn regions_parse_prefectures_and_codes() {
        let r = Region::parse("17, 392014").unwrap();
        assert!(r.contains(MunicipalityCode::parse("172049").unwrap()));
        assert!(r.contains(MunicipalityCode::parse("392014").unwrap()));
        assert!(!r.contains(MunicipalityCode::parse("131016").unwrap()));
        assert_eq!(r.to_string(), "17,392014");
        assert!(Region::parse("").is_err());
        assert!(Region::parse("1720").is_err());
        assert!(Region::parse("172048").is_err());
    }
}
