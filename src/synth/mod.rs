//! The synthetic population: persons who look real (names, readings, variant kanji, birth
//! dates, real municipality codes, insurer numbers with check digits, care levels in national
//! proportions, care plans) and noisy lookups with their right answers.
//!
//! Deterministic: the same parameters and seed give the same bytes. Nothing here reads the
//! clock; dates are relative to `as_of`.

mod care;
pub mod names;
pub mod queries;

use std::collections::HashMap;

use chrono::{Datelike, Duration, Months, NaiveDate};
use rand::distributions::{Distribution, WeightedIndex};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

use crate::keys::PersonIdKey;
use crate::model::person::{BURDEN_STAGES, CareOffice, EmergencyContact};
use crate::model::{CareLevel, InsuredNumber, InsurerNumber, MunicipalityCode, OfficeNumber, PersonRecord, Sex};
use crate::region::{self, Municipality};

#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error("市区町村コード {0} は組み込みの市区町村表にありません（石川県・高知県・東京23区のみ）")]
    UnknownMunicipality(MunicipalityCode),
    #[error("市区町村を1つ以上指定してください")]
    NoMunicipalities,
}

#[derive(Debug, Clone)]
pub struct Params {
    pub municipalities: Vec<MunicipalityCode>,
    pub persons: u64,
    pub seed: u64,
    /// The day the population is as of: ages, certification periods and plans are relative to it.
    pub as_of: NaiveDate,
}

/// The default `as_of`: fixed, so that output never depends on the day it is made.
pub fn default_as_of() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 10, 1).expect("valid date")
}

/// 要介護状態区分 in national proportions (介護保険事業状況報告, 認定者数 by level, rounded), with a
/// few 事業対象者 and 非該当 as municipal lists also carry.
const CARE_LEVELS: [(CareLevel, u32); 9] = [
    (CareLevel::NotApplicable, 5),
    (CareLevel::ProjectTarget, 20),
    (CareLevel::Support1, 140),
    (CareLevel::Support2, 138),
    (CareLevel::Care1, 209),
    (CareLevel::Care2, 169),
    (CareLevel::Care3, 133),
    (CareLevel::Care4, 126),
    (CareLevel::Care5, 85),
];

/// Ages of certified people (years, inclusive ranges) with weights: mostly 75–94, some over 100
/// (born in 大正) and a very few over 113 (born in 明治); 2号被保険者 (40–64) are a small share.
const AGE_BANDS: [((i32, i32), u32); 8] = [
    ((40, 64), 20),
    ((65, 74), 130),
    ((75, 84), 340),
    ((85, 94), 410),
    ((95, 99), 75),
    ((100, 105), 22),
    ((106, 112), 2),
    ((113, 116), 1),
];

/// 区分支給限度基準額 (単位/月) by level.
fn benefit_limit(level: CareLevel) -> Option<u32> {
    match level {
        CareLevel::ProjectTarget | CareLevel::Support1 => Some(5032),
        CareLevel::Support2 => Some(10531),
        CareLevel::Care1 | CareLevel::Transitional => Some(16765),
        CareLevel::Care2 => Some(19705),
        CareLevel::Care3 => Some(27048),
        CareLevel::Care4 => Some(30938),
        CareLevel::Care5 => Some(36217),
        CareLevel::NotApplicable => None,
    }
}

struct Office {
    number: OfficeNumber,
    name: String,
}

struct Place {
    muni: &'static Municipality,
    offices: Vec<Office>,
    /// 地域包括支援センター: plans for 要支援 and 事業対象者.
    support_center: Office,
}

/// The generator's state: the random stream and the counters that keep numbers unique.
pub struct Generator {
    rng: ChaCha20Rng,
    params: Params,
    places: Vec<Place>,
    levels: WeightedIndex<u32>,
    ages: WeightedIndex<u32>,
    ids: PersonIdKey,
    next_insured: HashMap<InsurerNumber, u64>,
    next_h: HashMap<InsurerNumber, u64>,
}

fn office_number(muni: &Municipality, class: char, seq: u32) -> OfficeNumber {
    // prefecture 2 + 区分 1 + area 2 (from the municipality code) + number 4 + check 1.
    let area = &muni.code.as_str()[2..4];
    let base = format!("{}{class}{area}{:04}", muni.code.prefecture(), seq % 10_000);
    OfficeNumber::from_base(&base).expect("digits and a valid class letter")
}

impl Generator {
    pub fn new(params: Params) -> Result<Generator, SynthError> {
        if params.municipalities.is_empty() {
            return Err(SynthError::NoMunicipalities);
        }
        let mut rng = ChaCha20Rng::seed_from_u64(params.seed);
        let per_muni = params.persons / params.municipalities.len() as u64;
        let offices_per_muni = (per_muni / 120).clamp(2, 400) as u32;
        let mut places = Vec::new();
        for (mi, code) in params.municipalities.iter().enumerate() {
            let muni = region::lookup(*code).ok_or(SynthError::UnknownMunicipality(*code))?;
            let offices = (0..offices_per_muni)
                .map(|i| {
                    let town = muni.towns.choose(&mut rng).cloned().unwrap_or_default();
                    let style = rng.gen_range(0..4);
                    let name = match style {
                        0 => format!("{town}ケアプランセンター"),
                        1 => format!("居宅介護支援事業所 {town}"),
                        2 => format!("{}在宅介護支援センター{town}", muni.name),
                        _ => format!(
                            "ケアマネジメント{}",
                            ["あかり", "ゆい", "こもれび", "ふれあい", "おおぞら"][i as usize % 5]
                        ),
                    };
                    Office { number: office_number(muni, '7', 1000 * mi as u32 + i + 1), name }
                })
                .collect();
            let support_center = Office {
                number: office_number(muni, '7', 9000 + mi as u32),
                name: format!("{}地域包括支援センター", muni.name),
            };
            places.push(Place { muni, offices, support_center });
        }
        let mut key = [0u8; 32];
        rng.fill(&mut key);
        Ok(Generator {
            levels: WeightedIndex::new(CARE_LEVELS.map(|(_, w)| w)).expect("weights"),
            ages: WeightedIndex::new(AGE_BANDS.map(|(_, w)| w)).expect("weights"),
            ids: PersonIdKey::from_bytes(key),
            rng,
            params,
            places,
            next_insured: HashMap::new(),
            next_h: HashMap::new(),
        })
    }

    fn birth_date(&mut self) -> (NaiveDate, bool) {
        let ((lo, hi), _) = AGE_BANDS[self.ages.sample(&mut self.rng)];
        let age = self.rng.gen_range(lo..=hi);
        let as_of = self.params.as_of;
        let latest = as_of.with_year(as_of.year() - age).unwrap_or(as_of);
        let birth = latest - Duration::days(self.rng.gen_range(0..365));
        (birth, age < 65)
    }

    fn insured_number(&mut self, insurer: &InsurerNumber, second_class: bool) -> InsuredNumber {
        // A bijection of a per-insurer counter (7919 is prime to 10^8), so numbers are unique
        // without remembering them, yet not sequential.
        if second_class && self.rng.gen_bool(0.1) {
            let c = self.next_h.entry(insurer.clone()).or_insert(0);
            *c += 1;
            return InsuredNumber::parse(&format!("H{:09}", (*c * 7919 + 104_729) % 1_000_000_000))
                .expect("H and 9 digits");
        }
        let c = self.next_insured.entry(insurer.clone()).or_insert(0);
        *c += 1;
        InsuredNumber::parse(&format!("00{:08}", (*c * 7919 + 31_337) % 100_000_000)).expect("10 digits")
    }

    fn person_name(&mut self, sex: Sex, birth_year: i32) -> (String, String, String, String) {
        let n = names::names();
        let s = n.surname(&mut self.rng);
        // Register spellings: about one bearer in six of a name that has variant forms writes it
        // with one of them (髙橋, 齋藤, 渡邉, 山﨑 …).
        let family = if !s.variants.is_empty() && self.rng.gen_bool(0.16) {
            s.variants.choose(&mut self.rng).cloned().unwrap_or_else(|| s.kanji.clone())
        } else {
            s.kanji.clone()
        };
        let g = n.given(&mut self.rng, sex, birth_year);
        (family, g.written.clone(), s.kana.clone(), g.kana.clone())
    }

    fn address(&mut self, muni: &Municipality) -> (String, String, String) {
        let town = muni.towns.choose(&mut self.rng).cloned().unwrap_or_default();
        let address = if muni.prefecture == "東京都" {
            let mut a = format!(
                "{}{}{}{}丁目{}番{}号",
                muni.prefecture,
                muni.name,
                town,
                self.rng.gen_range(1..=5),
                self.rng.gen_range(1..=30),
                self.rng.gen_range(1..=20)
            );
            if self.rng.gen_bool(0.4) {
                a.push_str(&format!(
                    " {}{}号室",
                    ["コーポ", "ハイツ", "メゾン", "都営住宅"][self.rng.gen_range(0..4)],
                    self.rng.gen_range(101..=512)
                ));
            }
            a
        } else {
            format!("{}{}{}{}番地", muni.prefecture, muni.name, town, self.rng.gen_range(1..=250))
        };
        let (postal_prefix, area) = match muni.code.prefecture() {
            "17" => ("92", "0768"),
            "39" => ("78", "088"),
            _ => ("1", "03"),
        };
        let postal = if postal_prefix.len() == 1 {
            format!("1{:02}-{:04}", self.rng.gen_range(0..100), self.rng.gen_range(0..10_000))
        } else {
            format!("{postal_prefix}{}-{:04}", self.rng.gen_range(0..10), self.rng.gen_range(0..10_000))
        };
        let phone = match self.rng.gen_range(0..10) {
            0 => String::new(),
            1..=3 => format!("090-{:04}-{:04}", self.rng.gen_range(0..10_000), self.rng.gen_range(0..10_000)),
            _ if area == "03" => {
                format!("03-{:04}-{:04}", self.rng.gen_range(3000..10_000), self.rng.gen_range(0..10_000))
            }
            _ => format!("{area}-{:02}-{:04}", self.rng.gen_range(10..100), self.rng.gen_range(0..10_000)),
        };
        (postal, address, phone)
    }

    /// The next person of the population.
    pub fn person(&mut self) -> PersonRecord {
        let place_index = self.rng.gen_range(0..self.places.len());
        let muni = self.places[place_index].muni;
        let sex = if self.rng.gen_bool(0.67) { Sex::Female } else { Sex::Male };
        let (birth_date, second_class) = self.birth_date();
        let (family_name, given_name, family_name_kana, given_name_kana) = self.person_name(sex, birth_date.year());
        let insurer_number = muni.insurer_number();
        let insured_number = self.insured_number(&insurer_number, second_class);
        let (postal_code, address, phone) = self.address(muni);
        let care_level = CARE_LEVELS[self.levels.sample(&mut self.rng)].0;
        let degree = care::degree(care_level);
        let rng = &mut self.rng;

        let certified_on = self.params.as_of - Duration::days(rng.gen_range(10..700));
        let months = [12u32, 24, 36, 48][rng.gen_range(0..4)];
        let valid_to = certified_on.checked_add_months(Months::new(months)).map(|d| d - Duration::days(1));
        let care_office = if care_level == CareLevel::NotApplicable {
            None
        } else {
            let place = &self.places[place_index];
            let office = if matches!(care_level, CareLevel::Support1 | CareLevel::Support2 | CareLevel::ProjectTarget) {
                &place.support_center
            } else {
                place.offices.choose(rng).unwrap_or(&place.support_center)
            };
            let manager_sex = if rng.gen_bool(0.75) { Sex::Female } else { Sex::Male };
            let names = names::names();
            let manager = format!("{} {}", names.surname(rng).kanji, names.given(rng, manager_sex, 1975).written);
            let phone = format!(
                "{}-{:02}-{:04}",
                if muni.prefecture == "東京都" { "03" } else { "0120" },
                rng.gen_range(10..100),
                rng.gen_range(0..10_000)
            );
            Some(CareOffice { number: office.number.clone(), name: office.name.clone(), care_manager: manager, phone })
        };
        let copay_ratio = match rng.gen_range(0..100) {
            0..=86 => 1,
            87..=92 => 2,
            _ => 3,
        };
        let burden_stage = rng.gen_bool(0.12).then(|| BURDEN_STAGES.choose(rng).copied().unwrap_or("2").to_owned());
        let mut person = PersonRecord {
            person_id: self.ids.person_id(&insurer_number, &insured_number),
            card_insurer_number: muni.own_insurer_number(),
            insurer_number,
            insured_number,
            municipality: muni.code,
            family_name,
            given_name,
            family_name_kana,
            given_name_kana,
            birth_date,
            sex,
            postal_code,
            address,
            phone,
            care_level,
            certified_on: Some(certified_on),
            valid_from: Some(certified_on),
            valid_to,
            benefit_limit_units: benefit_limit(care_level),
            copay_ratio: Some(copay_ratio),
            burden_stage,
            care_office,
            diagnoses: care::diagnoses(rng),
            special_medical: care::special_medical(rng, degree),
            disability_independence: Some(care::disability_independence(rng, degree)),
            dementia_independence: Some(care::dementia_independence(rng, degree)),
            medication_notes: care::medication_notes(rng),
            infection: care::infection(rng),
            allergies: care::allergies(rng),
            adl: (care_level != CareLevel::NotApplicable).then(|| care::barthel(rng, degree)),
            equipment: care::equipment(rng, degree),
            home_modification: care::home_modification(rng),
            plan: care::plan(rng, degree, care_level),
            emergency_contacts: Vec::new(),
        };
        add_contacts(&mut person, self.params.seed);
        person
    }
}

/// Relations of an emergency contact, with the contact's sex and whether they share the
/// person's surname (a married daughter often does not).
const RELATIONS: [(&str, Sex, f64); 8] = [
    ("長男", Sex::Male, 1.0),
    ("次男", Sex::Male, 1.0),
    ("長女", Sex::Female, 0.4),
    ("次女", Sex::Female, 0.4),
    ("配偶者", Sex::Female, 1.0),
    ("姪", Sex::Female, 0.3),
    ("甥", Sex::Male, 0.5),
    ("近所の知人", Sex::Female, 0.0),
];

/// Adds 0–2 emergency contacts, drawn from their own random stream (seeded by the population's
/// seed and the person's card number), so adding them left the rest of every generated
/// population as it was.
fn add_contacts(p: &mut PersonRecord, seed: u64) {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("contacts\0{seed}\0{}", p.insured_number.as_str()));
    let mut rng = ChaCha20Rng::from_seed(digest.into());
    let count = match rng.gen_range(0..10) {
        0 => 0,
        1..=5 => 1,
        _ => 2,
    };
    let names = names::names();
    for _ in 0..count {
        let (relation, sex, same_surname) = RELATIONS[rng.gen_range(0..RELATIONS.len())];
        let sex = if relation == "配偶者" && p.sex == Sex::Female { Sex::Male } else { sex };
        let family =
            if rng.gen_bool(same_surname) { p.family_name.clone() } else { names.surname(&mut rng).kanji.clone() };
        let born = p.birth_date.year() + if relation == "配偶者" { 0 } else { 28 };
        let given = names.given(&mut rng, sex, born).written.clone();
        let phone = format!(
            "{}-{:04}-{:04}",
            ["090", "080", "070"][rng.gen_range(0..3)],
            rng.gen_range(0..10_000),
            rng.gen_range(0..10_000)
        );
        p.emergency_contacts.push(EmergencyContact {
            name: format!("{family} {given}"),
            relation: relation.into(),
            phone,
        });
    }
}
