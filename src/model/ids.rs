//! Identifiers, validated on construction: their lengths, characters and check digits, as the
//! person CSV lists them (docs/person-csv.md).
//!
//! A value of one of these types is known to have the right form; where a check digit rule is
//! certain (市区町村コード) a wrong digit is refused, where it is only likely (保険者番号,
//! 事業所番号) the caller decides whether a mismatch is a warning (see `*_check_ok`).

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{what}は{len}桁の数字です（入力: {got:?}）")]
    Length { what: &'static str, len: usize, got: String },
    #[error("{what}の検査数字が合いません（入力: {got}、正しくは末尾 {expected}）")]
    CheckDigit { what: &'static str, got: String, expected: char },
    #[error("{what}に使えない文字があります（入力: {got:?}）")]
    Charset { what: &'static str, got: String },
}

fn all_digits(s: &str, len: usize, what: &'static str) -> Result<(), IdError> {
    if s.len() != len || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(IdError::Length { what, len, got: s.to_owned() });
    }
    Ok(())
}

fn digit(b: u8) -> u32 {
    u32::from(b - b'0')
}

/// Check digit of a 市区町村コード: weights 6,5,4,3,2 on the first five digits,
/// (11 − sum mod 11) mod 10.
pub fn municipality_check_digit(first5: &[u8; 5]) -> u8 {
    let sum: u32 = first5.iter().zip([6, 5, 4, 3, 2]).map(|(&b, w)| digit(b) * w).sum();
    ((11 - sum % 11) % 10) as u8
}

/// Modulus 10, weights 2-1 from the left, the digits of two-digit products added; check =
/// (10 − sum mod 10) mod 10. Used by 保険者番号 and (with letters read as 10…32) 事業所番号.
fn mod10_weights_21(values: impl Iterator<Item = u32>) -> u8 {
    let sum: u32 = values
        .enumerate()
        .map(|(i, v)| {
            let p = v * if i % 2 == 0 { 2 } else { 1 };
            p / 10 + p % 10
        })
        .sum();
    ((10 - sum % 10) % 10) as u8
}

/// 全国地方公共団体コード: 2-digit prefecture, 3 digits, a mod-11 check digit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MunicipalityCode([u8; 6]);

impl MunicipalityCode {
    pub fn parse(s: &str) -> Result<Self, IdError> {
        const WHAT: &str = "市区町村コード";
        all_digits(s, 6, WHAT)?;
        let b = s.as_bytes();
        let first5: [u8; 5] = [b[0], b[1], b[2], b[3], b[4]];
        let expected = municipality_check_digit(&first5);
        if digit(b[5]) != u32::from(expected) {
            return Err(IdError::CheckDigit { what: WHAT, got: s.to_owned(), expected: char::from(b'0' + expected) });
        }
        Ok(MunicipalityCode([b[0], b[1], b[2], b[3], b[4], b[5]]))
    }

    /// The code with its check digit computed from the first five digits.
    pub fn from_first5(first5: &str) -> Result<Self, IdError> {
        all_digits(first5, 5, "市区町村コード（上5桁）")?;
        let b = first5.as_bytes();
        let c = municipality_check_digit(&[b[0], b[1], b[2], b[3], b[4]]);
        Self::parse(&format!("{first5}{c}"))
    }

    pub fn as_str(&self) -> &str {
        // The bytes were checked to be ASCII digits on construction.
        std::str::from_utf8(&self.0).expect("ASCII digits")
    }

    /// The 2-digit prefecture code (01 北海道 … 47 沖縄県).
    pub fn prefecture(&self) -> &str {
        &self.as_str()[..2]
    }

    /// The first five digits, which the 保険者番号 of the municipality repeats.
    pub fn first5(&self) -> &str {
        &self.as_str()[..5]
    }
}

impl fmt::Display for MunicipalityCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<String> for MunicipalityCode {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        Self::parse(&s)
    }
}

impl From<MunicipalityCode> for String {
    fn from(c: MunicipalityCode) -> String {
        c.as_str().to_owned()
    }
}

/// 介護保険 保険者番号 (also used for 証記載保険者番号): six digits, the last a mod-10 check digit.
/// The check rule comes from public billing code and is only likely, so a mismatch is allowed in
/// and reported as a warning by the caller (`check_ok`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct InsurerNumber(String);

impl InsurerNumber {
    pub fn parse(s: &str) -> Result<Self, IdError> {
        all_digits(s, 6, "保険者番号")?;
        Ok(InsurerNumber(s.to_owned()))
    }

    /// The number with its check digit computed from a 5-digit base.
    pub fn from_base(base5: &str) -> Result<Self, IdError> {
        all_digits(base5, 5, "保険者番号（上5桁）")?;
        let c = Self::check_digit(base5);
        Self::parse(&format!("{base5}{c}"))
    }

    pub fn check_digit(base5: &str) -> u8 {
        mod10_weights_21(base5.bytes().map(digit))
    }

    pub fn check_ok(&self) -> bool {
        let (base, last) = self.0.split_at(5);
        u32::from(Self::check_digit(base)) == digit(last.as_bytes()[0])
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for InsurerNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for InsurerNumber {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        Self::parse(&s)
    }
}

impl From<InsurerNumber> for String {
    fn from(n: InsurerNumber) -> String {
        n.0
    }
}

/// 被保険者番号: 10 characters assigned by the municipality, no national check digit; some start
/// with "H". Treated as opaque: digits and upper-case ASCII letters only.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct InsuredNumber(String);

impl InsuredNumber {
    pub fn parse(s: &str) -> Result<Self, IdError> {
        const WHAT: &str = "被保険者番号";
        if s.len() != 10 {
            return Err(IdError::Length { what: WHAT, len: 10, got: s.to_owned() });
        }
        if !s.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_uppercase()) {
            return Err(IdError::Charset { what: WHAT, got: s.to_owned() });
        }
        Ok(InsuredNumber(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for InsuredNumber {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        Self::parse(&s)
    }
}

impl From<InsuredNumber> for String {
    fn from(n: InsuredNumber) -> String {
        n.0
    }
}

/// 介護保険事業所番号: prefecture 2 + 区分 1 (digit or letter, no I/O/Q) + area 2 + number 4 +
/// check 1. The check digit is modulus 10 weights 2-1 with letters read A=10 … Z=32 (I, O, Q
/// skipped); example numbers in official specs fail it, so a mismatch is only a warning.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct OfficeNumber(String);

impl OfficeNumber {
    pub fn parse(s: &str) -> Result<Self, IdError> {
        const WHAT: &str = "事業所番号";
        if s.len() != 10 {
            return Err(IdError::Length { what: WHAT, len: 10, got: s.to_owned() });
        }
        let b = s.as_bytes();
        let class_ok = b[2].is_ascii_digit() || (b[2].is_ascii_uppercase() && !b"IOQ".contains(&b[2]));
        let digits_ok = b.iter().enumerate().all(|(i, c)| i == 2 || c.is_ascii_digit());
        if !class_ok || !digits_ok {
            return Err(IdError::Charset { what: WHAT, got: s.to_owned() });
        }
        Ok(OfficeNumber(s.to_owned()))
    }

    /// The number with its check digit computed from the first nine characters.
    pub fn from_base(base9: &str) -> Result<Self, IdError> {
        let Some(c) = Self::check_digit(base9) else {
            return Err(IdError::Charset { what: "事業所番号", got: base9.to_owned() });
        };
        Self::parse(&format!("{base9}{c}"))
    }

    fn char_value(c: u8) -> Option<u32> {
        match c {
            b'0'..=b'9' => Some(digit(c)),
            // A=10 … Z=32 with I, O and Q not used, so the letters after them shift down.
            b'A'..=b'Z' if !b"IOQ".contains(&c) => {
                let skipped = b"IOQ".iter().filter(|&&s| s < c).count() as u32;
                Some(10 + u32::from(c - b'A') - skipped)
            }
            _ => None,
        }
    }

    pub fn check_digit(base9: &str) -> Option<u8> {
        if base9.len() != 9 {
            return None;
        }
        let values: Option<Vec<u32>> = base9.bytes().map(Self::char_value).collect();
        // A letter's two-digit value is weighted like a digit; the digits of the product are
        // added, as for every other position.
        Some(mod10_weights_21(values?.into_iter()))
    }

    pub fn check_ok(&self) -> bool {
        let (base, last) = self.0.split_at(9);
        Self::check_digit(base).is_some_and(|c| u32::from(c) == digit(last.as_bytes()[0]))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OfficeNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for OfficeNumber {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        Self::parse(&s)
    }
}

impl From<OfficeNumber> for String {
    fn from(n: OfficeNumber) -> String {
        n.0
    }
}

/// A person's pseudonymous id: stable across snapshots, derived by the central with a keyed hash
/// of (保険者番号, 被保険者番号), so audit entries can name a person without naming them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PersonId(String);

impl PersonId {
    pub const HEX_LEN: usize = 32;

    pub fn parse(s: &str) -> Result<Self, IdError> {
        if s.len() != Self::HEX_LEN || !s.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
            return Err(IdError::Charset { what: "個人ID", got: s.to_owned() });
        }
        Ok(PersonId(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for PersonId {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        Self::parse(&s)
    }
}

impl From<PersonId> for String {
    fn from(p: PersonId) -> String {
        p.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_municipality_codes_pass() {
        for code in ["131016", "131041", "131130", "172049", "172057", "011002"] {
            MunicipalityCode::parse(code).unwrap_or_else(|e| panic!("{code}: {e}"));
        }
    }

    #[test]
    fn municipality_code_with_wrong_check_digit_is_refused() {
        let err = MunicipalityCode::parse("172048").unwrap_err();
        assert_eq!(err, IdError::CheckDigit { what: "市区町村コード", got: "172048".into(), expected: '9' });
        assert!(MunicipalityCode::parse("17204").is_err());
        assert!(MunicipalityCode::parse("17204a").is_err());
    }

    #[test]
    fn published_insurer_numbers_pass() {
        for n in ["131011", "131045", "122192", "122069", "172056"] {
            assert!(InsurerNumber::parse(n).unwrap().check_ok(), "{n}");
        }
        assert_eq!(InsurerNumber::from_base("13101").unwrap().as_str(), "131011");
        assert!(!InsurerNumber::parse("131012").unwrap().check_ok());
    }

    #[test]
    fn office_number_check_digit_round_trips_with_letters() {
        for base in ["172700012", "39A010001", "13B990123", "17Z000001"] {
            let n = OfficeNumber::from_base(base).unwrap();
            assert!(n.check_ok(), "{n}");
            let last = n.as_str().as_bytes()[9];
            let wrong = format!("{base}{}", char::from(b'0' + (last - b'0' + 1) % 10));
            assert!(!OfficeNumber::parse(&wrong).unwrap().check_ok(), "{wrong}");
        }
        assert!(OfficeNumber::parse("17I0000010").is_err(), "I is not a 区分 letter");
    }

    #[test]
    fn office_letters_skip_i_o_q() {
        assert_eq!(OfficeNumber::char_value(b'A'), Some(10));
        assert_eq!(OfficeNumber::char_value(b'H'), Some(17));
        assert_eq!(OfficeNumber::char_value(b'J'), Some(18));
        assert_eq!(OfficeNumber::char_value(b'Z'), Some(32));
        assert_eq!(OfficeNumber::char_value(b'O'), None);
    }
}
