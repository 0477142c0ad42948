//! What a person's record shows to whom: the purpose staff state before opening it, and the
//! record cut down to the sections the authorization gives their role. Pure: the
//! pages and the JSON API both show exactly what `disclose` returns.

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};

use crate::authz::Section;
use crate::model::person::{BARTHEL_ITEMS, CarePlan, EmergencyContact};
use crate::model::wareki::to_wareki;
use crate::model::{MunicipalityCode, PersonRecord};
use crate::region;
use crate::search::matcher::{Candidate, Grade, Index, Verdict};

/// Why a record is opened, asked every time and written to the audit entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purpose {
    LifeSupport,
    Receiving,
    Medical,
    Other(String),
}

impl Purpose {
    /// The choices a form offers, as (value, label).
    pub const CHOICES: [(&'static str, &'static str); 4] =
        [("life_support", "生活支援"), ("receiving", "受入れ"), ("medical", "医療連携"), ("other", "その他")];

    /// From a form or API value; "other" needs its text.
    pub fn parse(kind: &str, other: &str) -> Result<Purpose, PurposeError> {
        let other = crate::model::text::clean(other.trim(), false)?;
        let other = other.as_ref();
        match kind {
            "life_support" | "生活支援" => Ok(Purpose::LifeSupport),
            "receiving" | "受入れ" => Ok(Purpose::Receiving),
            "medical" | "医療連携" => Ok(Purpose::Medical),
            "other" | "その他" if other.is_empty() => Err(PurposeError::OtherWithoutText),
            "other" | "その他" if other.chars().count() > PURPOSE_TEXT_CHARS_MAX => Err(PurposeError::TooLong),
            "other" | "その他" => Ok(Purpose::Other(other.to_owned())),
            _ => Err(PurposeError::Missing),
        }
    }

    /// The purpose a `label` names (what a session keeps for each person).
    pub fn from_label(label: &str) -> Purpose {
        match label.strip_prefix("その他：") {
            Some(text) => Purpose::Other(text.to_owned()),
            None => Purpose::parse(label, "").unwrap_or_else(|_| Purpose::Other(label.to_owned())),
        }
    }

    /// As the audit log and the pages write it.
    pub fn label(&self) -> String {
        match self {
            Purpose::LifeSupport => "生活支援".into(),
            Purpose::Receiving => "受入れ".into(),
            Purpose::Medical => "医療連携".into(),
            Purpose::Other(text) => format!("その他：{text}"),
        }
    }
}

const PURPOSE_TEXT_CHARS_MAX: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PurposeError {
    #[error("記録を開く目的を選んでください（生活支援・受入れ・医療連携・その他）")]
    Missing,
    #[error("「その他」を選んだときは、目的を書いてください")]
    OtherWithoutText,
    #[error("目的に{0}")]
    Control(#[from] crate::model::text::ControlCharacter),
    #[error("目的は200文字以内で書いてください")]
    TooLong,
}

#[derive(Debug, Clone, Serialize)]
pub struct Card {
    pub name: String,
    pub kana: String,
    pub birth_date: NaiveDate,
    pub birth_date_wareki: String,
    pub age: u32,
    pub sex: &'static str,
    pub insurer_number: String,
    pub card_insurer_number: String,
    pub insured_number: String,
    pub municipality: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Contact {
    pub postal_code: String,
    pub address: String,
    pub phone: String,
    pub emergency_contacts: Vec<EmergencyContact>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Certification {
    pub care_level: &'static str,
    pub care_level_code: &'static str,
    pub certified_on: Option<NaiveDate>,
    pub valid_from: Option<NaiveDate>,
    pub valid_to: Option<NaiveDate>,
    /// Whether today falls inside the 認定有効期間.
    pub valid_today: bool,
    pub benefit_limit_units: Option<u32>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Burden {
    /// 負担割合, in 割.
    pub copay_ratio: Option<u8>,
    /// 負担限度額 利用者負担段階.
    pub burden_stage: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CareManager {
    pub office_number: String,
    pub office_name: String,
    pub care_manager: String,
    pub phone: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Medical {
    pub diagnoses: Vec<String>,
    pub special_medical: Vec<String>,
    pub disability_independence: Option<String>,
    pub dementia_independence: Option<String>,
    pub medication_notes: String,
    pub allergies: String,
    pub infection: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Adl {
    /// Barthel Index items in LIFE order with their scores.
    pub items: Vec<(&'static str, u8)>,
    pub total: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct Equipment {
    pub equipment: Vec<String>,
    pub home_modification: String,
}

/// A record as one role may see it: a section the role may not see is `None`, never empty.
#[derive(Debug, Clone, Serialize)]
pub struct Disclosed {
    pub person_id: String,
    /// The sections shown, by name.
    pub sections: Vec<&'static str>,
    pub card: Option<Card>,
    pub contact: Option<Contact>,
    pub certification: Option<Certification>,
    pub burden: Option<Burden>,
    pub care_manager: Option<CareManager>,
    pub medical: Option<Medical>,
    pub care_plan: Option<CarePlan>,
    pub adl: Option<Adl>,
    pub equipment: Option<Equipment>,
}

fn age_on(birth: NaiveDate, today: NaiveDate) -> u32 {
    let mut age = today.year() - birth.year();
    if (today.month(), today.day()) < (birth.month(), birth.day()) {
        age -= 1;
    }
    age.max(0) as u32
}

fn municipality_name(code: &MunicipalityCode) -> String {
    region::lookup(*code).map_or_else(|| code.to_string(), |m| m.name.clone())
}

/// Cuts a record down to `sections`.
pub fn disclose(r: &PersonRecord, sections: &[Section], today: NaiveDate) -> Disclosed {
    let has = |s: Section| sections.contains(&s);
    Disclosed {
        person_id: r.person_id.as_str().to_owned(),
        sections: Section::ALL.iter().filter(|s| has(**s)).map(|s| s.name()).collect(),
        card: has(Section::Card).then(|| Card {
            name: format!("{} {}", r.family_name, r.given_name),
            kana: format!("{} {}", r.family_name_kana, r.given_name_kana),
            birth_date: r.birth_date,
            birth_date_wareki: to_wareki(r.birth_date).map(|w| w.kanji()).unwrap_or_default(),
            age: age_on(r.birth_date, today),
            sex: r.sex.kanji(),
            insurer_number: r.insurer_number.to_string(),
            card_insurer_number: r.card_insurer_number.to_string(),
            insured_number: r.insured_number.as_str().to_owned(),
            municipality: municipality_name(&r.municipality),
        }),
        contact: has(Section::Contact).then(|| Contact {
            postal_code: r.postal_code.clone(),
            address: r.address.clone(),
            phone: r.phone.clone(),
            emergency_contacts: r.emergency_contacts.clone(),
        }),
        certification: has(Section::Certification).then(|| Certification {
            care_level: r.care_level.label(),
            care_level_code: r.care_level.code(),
            certified_on: r.certified_on,
            valid_from: r.valid_from,
            valid_to: r.valid_to,
            valid_today: r.valid_from.is_some_and(|f| f <= today) && r.valid_to.is_some_and(|t| today <= t),
            benefit_limit_units: r.benefit_limit_units,
        }),
        burden: has(Section::Burden)
            .then(|| Burden { copay_ratio: r.copay_ratio, burden_stage: r.burden_stage.clone() }),
        care_manager: r.care_office.as_ref().filter(|_| has(Section::CareManager)).map(|o| CareManager {
            office_number: o.number.to_string(),
            office_name: o.name.clone(),
            care_manager: o.care_manager.clone(),
            phone: o.phone.clone(),
        }),
        medical: has(Section::MedicalOpinion).then(|| Medical {
            diagnoses: r.diagnoses.clone(),
            special_medical: r.special_medical.clone(),
            disability_independence: r.disability_independence.clone(),
            dementia_independence: r.dementia_independence.clone(),
            medication_notes: r.medication_notes.clone(),
            allergies: r.allergies.clone(),
            infection: r.infection.clone(),
        }),
        care_plan: has(Section::CarePlan).then(|| r.plan.clone()),
        adl: r.adl.as_ref().filter(|_| has(Section::Adl)).map(|b| Adl {
            items: BARTHEL_ITEMS.iter().zip(b.0).map(|((name, _), score)| (*name, score)).collect(),
            total: b.total(),
        }),
        equipment: has(Section::Equipment)
            .then(|| Equipment { equipment: r.equipment.clone(), home_modification: r.home_modification.clone() }),
    }
}

/// Where a person is now, as field staff record it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Place {
    /// This shelter (the node's).
    Shelter,
    Facility,
    Hospital,
    Home,
    Other,
}

impl Place {
    pub const ALL: [Place; 5] = [Place::Shelter, Place::Facility, Place::Hospital, Place::Home, Place::Other];

    pub fn name(self) -> &'static str {
        match self {
            Place::Shelter => "shelter",
            Place::Facility => "facility",
            Place::Hospital => "hospital",
            Place::Home => "home",
            Place::Other => "other",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Place::Shelter => "この避難所",
            Place::Facility => "施設（名前を記入）",
            Place::Hospital => "病院（名前を記入）",
            Place::Home => "自宅",
            Place::Other => "その他（記入）",
        }
    }

    pub fn parse(s: &str) -> Option<Place> {
        Place::ALL.into_iter().find(|p| p.name() == s)
    }
}

/// A whereabouts and handover note for one person: what the next carer needs to know.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldEvent {
    pub place: Place,
    /// The facility's or hospital's name (or what "other" means).
    #[serde(default)]
    pub place_name: String,
    #[serde(default)]
    pub note: String,
}

/// A field event as a form or a JSON body sends it, before it is checked.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldEventInput {
    #[serde(default)]
    pub place: String,
    #[serde(default)]
    pub place_name: String,
    #[serde(default)]
    pub note: String,
}

impl FieldEventInput {
    pub fn parse(&self) -> Result<FieldEvent, FieldEventError> {
        FieldEvent::parse(&self.place, &self.place_name, &self.note)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldEventError {
    #[error("いまの居場所を選んでください（shelter, facility, hospital, home, other）")]
    PlaceUnknown,
    #[error("施設・病院・その他のときは、場所の名前を書いてください")]
    PlaceNameMissing,
    #[error("場所の名前は{0}文字以内にしてください")]
    PlaceNameTooLong(usize),
    #[error("申し送りは{0}文字以内にしてください")]
    NoteTooLong(usize),
    #[error("場所の名前か申し送りに{0}")]
    Control(#[from] crate::model::text::ControlCharacter),
}

impl FieldEvent {
    /// From a form or a JSON body: the place by its name, then `checked`.
    pub fn parse(place: &str, place_name: &str, note: &str) -> Result<FieldEvent, FieldEventError> {
        FieldEvent::checked(Place::parse(place).ok_or(FieldEventError::PlaceUnknown)?, place_name, note)
    }

    /// Trims the text and checks it against the limits.
    pub fn checked(place: Place, place_name: &str, note: &str) -> Result<FieldEvent, FieldEventError> {
        use crate::limits::{FIELD_NOTE_CHARS_MAX, FIELD_PLACE_CHARS_MAX};
        let place_name = crate::model::text::clean(place_name.trim(), false)?;
        let note = crate::model::text::clean(note.trim(), true)?;
        let (place_name, note) = (place_name.as_ref(), note.as_ref());
        if matches!(place, Place::Facility | Place::Hospital | Place::Other) && place_name.is_empty() {
            return Err(FieldEventError::PlaceNameMissing);
        }
        if place_name.chars().count() > FIELD_PLACE_CHARS_MAX {
            return Err(FieldEventError::PlaceNameTooLong(FIELD_PLACE_CHARS_MAX));
        }
        if note.chars().count() > FIELD_NOTE_CHARS_MAX {
            return Err(FieldEventError::NoteTooLong(FIELD_NOTE_CHARS_MAX));
        }
        Ok(FieldEvent { place, place_name: place_name.to_owned(), note: note.to_owned() })
    }

    /// "病院：輪島病院" and the like.
    pub fn where_text(&self) -> String {
        match self.place {
            Place::Shelter => "この避難所".into(),
            Place::Home => "自宅".into(),
            Place::Facility => format!("施設：{}", self.place_name),
            Place::Hospital => format!("病院：{}", self.place_name),
            Place::Other => format!("その他：{}", self.place_name),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct CandidateView {
    pub person_id: String,
    pub name: String,
    pub kana: String,
    pub birth_date: String,
    pub birth_date_wareki: String,
    pub sex: &'static str,
    pub municipality: String,
    pub grade: Grade,
    pub score: f64,
    pub agreed: Vec<crate::search::matcher::Field>,
}

#[derive(Debug, Serialize)]
pub struct SearchResponse {
    pub verdict: Verdict,
    pub message: &'static str,
    pub candidates: Vec<CandidateView>,
}

pub fn verdict_message(v: Verdict) -> &'static str {
    match v {
        Verdict::Likely => "この人である可能性が高いです。本人や家族に確かめてから開いてください。",
        Verdict::Ambiguous => {
            "同じくらい当てはまる人が複数います。ほかの情報（住所、家族の名前など）を聞いて絞ってください。"
        }
        Verdict::Possible => "確かな候補はありません。候補は参考です。情報を確かめて検索し直してください。",
        Verdict::NotFound => {
            "当てはまる人は見つかりませんでした。入力を確かめるか、この地域の方ではない可能性があります。"
        }
    }
}

/// A search candidate as staff see it: just enough to tell people apart.
pub fn candidate_view(index: &Index, c: &Candidate) -> CandidateView {
    let r = index.shown(c.record);
    CandidateView {
        person_id: r.person_id,
        name: format!("{} {}", r.family_name, r.given_name),
        kana: format!("{} {}", r.family_kana, r.given_kana),
        birth_date: r.birth_date.to_string(),
        birth_date_wareki: to_wareki(r.birth_date).map(|w| w.kanji()).unwrap_or_default(),
        sex: r.sex.kanji(),
        municipality: MunicipalityCode::parse(r.municipality)
            .ok()
            .and_then(region::lookup)
            .map_or_else(|| r.municipality.to_owned(), |m| m.name.clone()),
        grade: c.grade,
        score: (c.score * 10.0).round() / 10.0,
        agreed: c.agreed.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authz::{Role, default_sections};
    use crate::synth::{self, Generator};

    fn person() -> PersonRecord {
        let mut g = Generator::new(synth::Params {
            municipalities: vec![MunicipalityCode::parse("172049").unwrap()],
            persons: 50,
            seed: 9,
            as_of: synth::default_as_of(),
        })
        .unwrap();
        (0..50).map(|_| g.person()).find(|p| p.care_office.is_some() && p.adl.is_some()).unwrap()
    }

    fn sections(role: Role) -> Vec<Section> {
        default_sections().into_iter().find(|(r, _)| *r == role).unwrap().1
    }

    #[test]
    fn support_staff_never_see_the_burden_section_and_receiving_facilities_do() {
        let p = person();
        let today = NaiveDate::from_ymd_opt(2026, 11, 25).unwrap();
        let support = disclose(&p, &sections(Role::Support), today);
        assert!(support.burden.is_none());
        assert!(!support.sections.contains(&"burden"));
        assert!(support.card.is_some() && support.medical.is_some() && support.adl.is_some());
        let json = serde_json::to_string(&support).unwrap();
        assert!(json.contains("\"burden\":null"), "withheld, not empty: {json}");
        let receiving = disclose(&p, &sections(Role::Receiving), today);
        assert!(receiving.burden.is_some());
        let coordinator = disclose(&p, &sections(Role::Coordinator), today);
        assert!(coordinator.medical.is_none() && coordinator.contact.is_none() && coordinator.card.is_some());
    }

    #[test]
    fn age_counts_the_birthday() {
        let b = NaiveDate::from_ymd_opt(1940, 3, 2).unwrap();
        assert_eq!(age_on(b, NaiveDate::from_ymd_opt(2026, 3, 1).unwrap()), 85);
        assert_eq!(age_on(b, NaiveDate::from_ymd_opt(2026, 3, 2).unwrap()), 86);
    }

    #[test]
    fn a_purpose_is_required_and_other_needs_text() {
        assert_eq!(Purpose::parse("medical", ""), Ok(Purpose::Medical));
        assert_eq!(Purpose::parse("", ""), Err(PurposeError::Missing));
        assert_eq!(Purpose::parse("other", "  "), Err(PurposeError::OtherWithoutText));
        assert_eq!(Purpose::parse("other", "家族への連絡").unwrap().label(), "その他：家族への連絡");
        for p in [Purpose::LifeSupport, Purpose::Receiving, Purpose::Medical, Purpose::Other("安否確認".into())] {
            assert_eq!(Purpose::from_label(&p.label()), p);
        }
    }

    #[test]
    fn a_facility_or_hospital_needs_its_name() {
        assert_eq!(FieldEvent::checked(Place::Hospital, " ", ""), Err(FieldEventError::PlaceNameMissing));
        let e = FieldEvent::checked(Place::Hospital, " 市立輪島病院 ", "透析は火木土").unwrap();
        assert_eq!(e.where_text(), "病院：市立輪島病院");
        assert!(FieldEvent::checked(Place::Shelter, "", "").is_ok());
    }
}
