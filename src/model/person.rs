//! The person record a snapshot carries: what is on the 被保険者証, the
//! 主治医意見書 highlights, the care plan, ADL and equipment. Codes are enums; free text stays text.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::ids::{InsuredNumber, InsurerNumber, MunicipalityCode, OfficeNumber, PersonId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Sex {
    #[serde(rename = "1")]
    Male,
    #[serde(rename = "2")]
    Female,
}

impl Sex {
    pub fn code(self) -> &'static str {
        match self {
            Sex::Male => "1",
            Sex::Female => "2",
        }
    }

    pub fn from_code(s: &str) -> Option<Sex> {
        match s {
            "1" => Some(Sex::Male),
            "2" => Some(Sex::Female),
            _ => None,
        }
    }

    pub fn kanji(self) -> &'static str {
        match self {
            Sex::Male => "男",
            Sex::Female => "女",
        }
    }
}

/// 要介護状態区分 with its two-digit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum CareLevel {
    NotApplicable,
    ProjectTarget,
    Transitional,
    Support1,
    Support2,
    Care1,
    Care2,
    Care3,
    Care4,
    Care5,
}

impl CareLevel {
    pub const ALL: [CareLevel; 10] = [
        CareLevel::NotApplicable,
        CareLevel::ProjectTarget,
        CareLevel::Transitional,
        CareLevel::Support1,
        CareLevel::Support2,
        CareLevel::Care1,
        CareLevel::Care2,
        CareLevel::Care3,
        CareLevel::Care4,
        CareLevel::Care5,
    ];

    pub fn code(self) -> &'static str {
        match self {
            CareLevel::NotApplicable => "01",
            CareLevel::ProjectTarget => "06",
            CareLevel::Transitional => "11",
            CareLevel::Support1 => "12",
            CareLevel::Support2 => "13",
            CareLevel::Care1 => "21",
            CareLevel::Care2 => "22",
            CareLevel::Care3 => "23",
            CareLevel::Care4 => "24",
            CareLevel::Care5 => "25",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            CareLevel::NotApplicable => "非該当",
            CareLevel::ProjectTarget => "事業対象者",
            CareLevel::Transitional => "経過的要介護",
            CareLevel::Support1 => "要支援1",
            CareLevel::Support2 => "要支援2",
            CareLevel::Care1 => "要介護1",
            CareLevel::Care2 => "要介護2",
            CareLevel::Care3 => "要介護3",
            CareLevel::Care4 => "要介護4",
            CareLevel::Care5 => "要介護5",
        }
    }

    pub fn from_code(s: &str) -> Option<CareLevel> {
        CareLevel::ALL.into_iter().find(|l| l.code() == s)
    }

    /// 0 for none or support levels, 1–5 for 要介護1–5: how much help the person needs.
    pub fn care_degree(self) -> u8 {
        match self {
            CareLevel::Care1 | CareLevel::Transitional => 1,
            CareLevel::Care2 => 2,
            CareLevel::Care3 => 3,
            CareLevel::Care4 => 4,
            CareLevel::Care5 => 5,
            _ => 0,
        }
    }
}

impl TryFrom<String> for CareLevel {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        CareLevel::from_code(&s).ok_or_else(|| format!("要介護状態区分コードではありません: {s}"))
    }
}

impl From<CareLevel> for String {
    fn from(l: CareLevel) -> String {
        l.code().to_owned()
    }
}

/// The 12 items of 特別な医療 (認定調査, last 14 days).
pub const SPECIAL_MEDICAL: [&str; 12] = [
    "点滴の管理",
    "中心静脈栄養",
    "透析",
    "ストーマの処置",
    "酸素療法",
    "レスピレーター",
    "気管切開の処置",
    "疼痛の看護",
    "経管栄養",
    "モニター測定",
    "褥瘡の処置",
    "カテーテル",
];

/// 障害高齢者の日常生活自立度.
pub const DISABILITY_INDEPENDENCE: [&str; 9] = ["自立", "J1", "J2", "A1", "A2", "B1", "B2", "C1", "C2"];

/// 認知症高齢者の日常生活自立度.
pub const DEMENTIA_INDEPENDENCE: [&str; 8] = ["自立", "Ⅰ", "Ⅱa", "Ⅱb", "Ⅲa", "Ⅲb", "Ⅳ", "M"];

/// 利用者負担段階 for 負担限度額.
pub const BURDEN_STAGES: [&str; 4] = ["1", "2", "3-1", "3-2"];

/// The Barthel Index items in LIFE order, with the scores each allows.
pub const BARTHEL_ITEMS: [(&str, &[u8]); 10] = [
    ("食事", &[0, 5, 10]),
    ("移乗", &[0, 5, 10, 15]),
    ("整容", &[0, 5]),
    ("トイレ動作", &[0, 5, 10]),
    ("入浴", &[0, 5]),
    ("移動", &[0, 5, 10, 15]),
    ("階段昇降", &[0, 5, 10]),
    ("更衣", &[0, 5, 10]),
    ("排便", &[0, 5, 10]),
    ("排尿", &[0, 5, 10]),
];

/// Barthel Index scores in `BARTHEL_ITEMS` order; each is one the item allows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Barthel(pub [u8; 10]);

impl Barthel {
    pub fn total(&self) -> u32 {
        self.0.iter().map(|&s| u32::from(s)).sum()
    }
}

/// 居宅介護支援事業者 and its care manager.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CareOffice {
    pub number: OfficeNumber,
    pub name: String,
    pub care_manager: String,
    pub phone: String,
}

/// One row of ケアプラン 第2表: a need, its goals and the service that meets it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanNeed {
    pub need: String,
    pub long_goal: String,
    pub short_goal: String,
    pub service: String,
    pub provider: String,
    pub frequency: String,
}

/// One slot of ケアプラン 第3表 (the weekly schedule).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeeklySlot {
    /// 月 火 水 木 金 土 日.
    pub day: String,
    pub start: String,
    pub end: String,
    pub service: String,
}

/// ケアプラン 第1–3表.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CarePlan {
    /// 第1表: 利用者及び家族の生活に対する意向.
    pub wishes: String,
    /// 第1表: 総合的な援助の方針.
    pub policy: String,
    pub needs: Vec<PlanNeed>,
    pub weekly: Vec<WeeklySlot>,
}

/// Someone to call about the person: family, a neighbour, a friend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmergencyContact {
    pub name: String,
    /// 続柄: 長男, 配偶者, 友人 and so on.
    pub relation: String,
    pub phone: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonRecord {
    pub person_id: PersonId,
    pub insurer_number: InsurerNumber,
    pub card_insurer_number: InsurerNumber,
    pub insured_number: InsuredNumber,
    pub municipality: MunicipalityCode,
    pub family_name: String,
    pub given_name: String,
    pub family_name_kana: String,
    pub given_name_kana: String,
    pub birth_date: NaiveDate,
    pub sex: Sex,
    pub postal_code: String,
    pub address: String,
    pub phone: String,
    pub care_level: CareLevel,
    pub certified_on: Option<NaiveDate>,
    pub valid_from: Option<NaiveDate>,
    pub valid_to: Option<NaiveDate>,
    /// 区分支給限度基準額 in 単位 per month.
    pub benefit_limit_units: Option<u32>,
    /// 負担割合: 1, 2 or 3 (割).
    pub copay_ratio: Option<u8>,
    /// 負担限度額 利用者負担段階, one of `BURDEN_STAGES`.
    pub burden_stage: Option<String>,
    pub care_office: Option<CareOffice>,
    pub diagnoses: Vec<String>,
    /// Items of `SPECIAL_MEDICAL`.
    pub special_medical: Vec<String>,
    pub disability_independence: Option<String>,
    pub dementia_independence: Option<String>,
    pub medication_notes: String,
    pub infection: String,
    pub allergies: String,
    pub adl: Option<Barthel>,
    pub equipment: Vec<String>,
    pub home_modification: String,
    pub plan: CarePlan,
    /// 緊急連絡先. Absent in records written before the column existed.
    #[serde(default)]
    pub emergency_contacts: Vec<EmergencyContact>,
}
