//! The care content of a generated person: diagnoses, special medical care, ADL, equipment,
//! care plan. Probabilities follow the care level, so a 要介護5 person looks like one.

use rand::Rng;
use rand::seq::SliceRandom;

use crate::model::CareLevel;
use crate::model::person::{BARTHEL_ITEMS, Barthel, CarePlan, PlanNeed, WeeklySlot};

/// Diagnoses common in 主治医意見書 of care recipients, with relative weights.
const DIAGNOSES: &[(&str, u32)] = &[
    ("アルツハイマー型認知症", 18),
    ("脳梗塞後遺症", 15),
    ("高血圧症", 20),
    ("骨粗鬆症", 10),
    ("変形性膝関節症", 10),
    ("糖尿病", 10),
    ("慢性心不全", 8),
    ("大腿骨頸部骨折術後", 7),
    ("パーキンソン病", 5),
    ("脳出血後遺症", 5),
    ("脊柱管狭窄症", 6),
    ("慢性腎不全", 4),
    ("慢性閉塞性肺疾患", 4),
    ("血管性認知症", 4),
    ("関節リウマチ", 3),
    ("心房細動", 4),
    ("胃がん術後", 2),
    ("レビー小体型認知症", 2),
    ("筋萎縮性側索硬化症", 1),
];

const SPECIAL_MEDICAL_WEIGHTED: &[(&str, u32)] = &[
    ("褥瘡の処置", 20),
    ("カテーテル", 15),
    ("酸素療法", 14),
    ("経管栄養", 12),
    ("点滴の管理", 10),
    ("疼痛の看護", 8),
    ("モニター測定", 7),
    ("透析", 6),
    ("ストーマの処置", 4),
    ("気管切開の処置", 2),
    ("中心静脈栄養", 1),
    ("レスピレーター", 1),
];

const MEDICATIONS: &[&str] = &[
    "降圧剤（アムロジピン）朝食後",
    "インスリン自己注射 朝夕",
    "ワーファリン服用中（出血に注意）",
    "ドネペジル 朝食後",
    "利尿剤 朝食後、トイレが近くなる",
    "L-ドパ製剤 1日3回、時間厳守",
    "湿布（膝）1日1回",
    "便秘薬 就寝前",
    "睡眠導入剤 就寝前",
    "吸入薬 1日2回",
    "骨粗鬆症の注射 月1回",
    "服薬は家族が管理",
];

const INFECTIONS: &[&str] = &["MRSA保菌（接触予防策）", "HBs抗原陽性", "疥癬の既往（治療済）", "結核の既往（治癒）"];

const ALLERGIES: &[&str] = &[
    "ペニシリン系抗菌薬",
    "造影剤",
    "そば",
    "卵",
    "小麦",
    "えび・かに",
    "NSAIDs（喘息）",
    "ラテックス",
    "サバ",
    "牛乳",
];

const WISHES: &[&str] = &[
    "本人：住み慣れた家でできるだけ長く暮らしたい。家族：無理のない範囲で在宅介護を続けたい",
    "本人：畑仕事をまた少しでもしたい。家族：転ばないように見守ってほしい",
    "本人：人に迷惑をかけずに暮らしたい。家族：日中独りになるので見守りがほしい",
    "本人：風呂に気持ちよく入りたい。家族：入浴の介助が負担になっている",
    "本人：友達と話す機会がほしい。家族：物忘れが進まないようにしてほしい",
    "本人：痛みなく過ごしたい。家族：夜間の介護が続けられるか不安",
];

const POLICIES: &[&str] = &[
    "転倒を防ぎ、自宅での生活が続けられるよう、通所と福祉用具で支援します",
    "栄養と服薬の管理を整え、体調の悪化を早めに見つけられるよう関係者で連携します",
    "認知症の進行をゆるやかにし、家族の介護負担を減らすため、通所と短期入所を組み合わせます",
    "褥瘡の悪化を防ぎ、医療と介護が連携して在宅での療養を支えます",
    "できることを続けられるよう、生活機能の維持と社会参加を支援します",
];

/// (need, long goal, short goal, service, frequency); the provider is filled in per person.
const NEEDS: &[(&str, &str, &str, &str, &str, u8)] = &[
    ("一人で入浴するのが難しい", "清潔を保ち気持ちよく過ごせる", "週2回入浴できる", "通所介護", "週2回", 0),
    ("足腰が弱り転びやすい", "自宅内を安全に移動できる", "手すりを使って歩ける", "通所リハビリテーション", "週2回", 0),
    ("日中独りで過ごす時間が長い", "人と交流し生活にはりがある", "週に数回外出できる", "通所介護", "週3回", 0),
    ("調理や掃除が難しい", "栄養のある食事がとれる", "1日3食食べられる", "訪問介護（生活援助）", "週3回", 0),
    ("排泄の失敗がある", "排泄の失敗が減る", "トイレで排泄できる回数が増える", "訪問介護（身体介護）", "毎日", 2),
    ("寝返りが難しく床ずれの恐れがある", "床ずれができない", "2時間ごとに体位を変えられる", "訪問看護", "週2回", 3),
    ("服薬を忘れる", "体調が安定する", "決められた薬を飲める", "居宅療養管理指導", "月2回", 1),
    ("家族の介護負担が大きい", "家族が介護を続けられる", "家族が休息をとれる", "短期入所生活介護", "月7日", 2),
    (
        "ベッドからの起き上がりが難しい",
        "安全に起き上がれる",
        "介助で車いすに移れる",
        "福祉用具貸与（特殊寝台）",
        "継続",
        2,
    ),
    ("食事のむせがある", "安全に食事がとれる", "とろみ食でむせずに食べられる", "訪問看護", "週1回", 3),
];

const PROVIDER_SUFFIXES: &[&str] =
    &["デイサービスセンター", "訪問介護事業所", "訪問看護ステーション", "ケアセンター", "リハビリセンター"];
const PROVIDER_PREFIXES: &[&str] =
    &["あおぞら", "ひまわり", "さくら", "やすらぎ", "のぞみ", "なごみ", "みどり", "はまなす", "つばき", "かがやき"];

const EQUIPMENT: &[(&str, u8)] = &[
    ("歩行補助つえ", 0),
    ("歩行器", 1),
    ("手すり", 1),
    ("車いす", 2),
    ("車いす付属品", 3),
    ("特殊寝台", 2),
    ("特殊寝台付属品", 2),
    ("床ずれ防止用具", 4),
    ("体位変換器", 4),
    ("スロープ", 2),
    ("認知症老人徘徊感知機器", 3),
    ("移動用リフト", 4),
    ("自動排泄処理装置", 5),
];

const HOME_MODIFICATIONS: &[&str] = &[
    "手すりの取付け（トイレ・浴室）",
    "段差の解消（玄関）",
    "洋式便器への取替え",
    "滑りの防止のための床材の変更",
    "引き戸への扉の取替え",
];

fn weighted<'a>(rng: &mut impl Rng, items: &'a [(&'a str, u32)]) -> &'a str {
    let total: u32 = items.iter().map(|(_, w)| w).sum();
    let mut x = rng.gen_range(0..total);
    for (item, w) in items {
        if x < *w {
            return item;
        }
        x -= w;
    }
    items[items.len() - 1].0
}

/// 0 (independent) … 5 (needs full help): drives every probability below.
pub fn degree(level: CareLevel) -> u8 {
    match level {
        CareLevel::NotApplicable | CareLevel::ProjectTarget => 0,
        CareLevel::Support1 | CareLevel::Support2 => 0,
        other => other.care_degree(),
    }
}

pub fn diagnoses(rng: &mut impl Rng) -> Vec<String> {
    let n = rng.gen_range(1..=3);
    let mut out: Vec<String> = Vec::new();
    while out.len() < n {
        let d = weighted(rng, DIAGNOSES);
        if !out.iter().any(|o| o == d) {
            out.push(d.to_owned());
        }
    }
    out
}

pub fn special_medical(rng: &mut impl Rng, degree: u8) -> Vec<String> {
    let p = [0.02, 0.03, 0.05, 0.10, 0.20, 0.30][usize::from(degree.min(5))];
    if !rng.gen_bool(p) {
        return Vec::new();
    }
    let mut out = vec![weighted(rng, SPECIAL_MEDICAL_WEIGHTED).to_owned()];
    if rng.gen_bool(0.25) {
        let second = weighted(rng, SPECIAL_MEDICAL_WEIGHTED);
        if out[0] != second {
            out.push(second.to_owned());
        }
    }
    out
}

pub fn disability_independence(rng: &mut impl Rng, degree: u8) -> String {
    const BY_DEGREE: [&[&str]; 6] = [
        &["自立", "J1", "J2", "A1"],
        &["J2", "A1", "A2"],
        &["A1", "A2", "B1"],
        &["A2", "B1", "B2"],
        &["B1", "B2", "C1"],
        &["B2", "C1", "C2"],
    ];
    BY_DEGREE[usize::from(degree.min(5))].choose(rng).copied().unwrap_or("自立").to_owned()
}

pub fn dementia_independence(rng: &mut impl Rng, degree: u8) -> String {
    const BY_DEGREE: [&[&str]; 6] = [
        &["自立", "自立", "Ⅰ"],
        &["自立", "Ⅰ", "Ⅱa"],
        &["Ⅰ", "Ⅱa", "Ⅱb"],
        &["Ⅱb", "Ⅲa", "Ⅲb"],
        &["Ⅲa", "Ⅲb", "Ⅳ"],
        &["Ⅲb", "Ⅳ", "M"],
    ];
    BY_DEGREE[usize::from(degree.min(5))].choose(rng).copied().unwrap_or("自立").to_owned()
}

pub fn medication_notes(rng: &mut impl Rng) -> String {
    let n = rng.gen_range(0..=2);
    let mut notes: Vec<&str> = MEDICATIONS.choose_multiple(rng, n).copied().collect();
    notes.sort_unstable();
    notes.join("。")
}

pub fn infection(rng: &mut impl Rng) -> String {
    if rng.gen_bool(0.04) {
        INFECTIONS.choose(rng).copied().unwrap_or("なし").to_owned()
    } else {
        "なし".to_owned()
    }
}

pub fn allergies(rng: &mut impl Rng) -> String {
    if rng.gen_bool(0.12) { ALLERGIES.choose(rng).copied().unwrap_or("なし").to_owned() } else { "なし".to_owned() }
}

/// Barthel scores: each item at full independence with a probability that falls with degree.
pub fn barthel(rng: &mut impl Rng, degree: u8) -> Barthel {
    let p_full = (0.95 - 0.17 * f64::from(degree)).max(0.05);
    let mut scores = [0u8; 10];
    for (s, (_, allowed)) in scores.iter_mut().zip(BARTHEL_ITEMS) {
        *s = if rng.gen_bool(p_full) {
            allowed[allowed.len() - 1]
        } else {
            *allowed[..allowed.len() - 1].choose(rng).unwrap_or(&0)
        };
    }
    Barthel(scores)
}

pub fn equipment(rng: &mut impl Rng, degree: u8) -> Vec<String> {
    EQUIPMENT
        .iter()
        .filter(|(_, min)| degree >= *min && rng.gen_bool(if degree > *min { 0.5 } else { 0.2 }))
        .map(|(e, _)| (*e).to_owned())
        .collect()
}

pub fn home_modification(rng: &mut impl Rng) -> String {
    if rng.gen_bool(0.15) {
        HOME_MODIFICATIONS.choose(rng).copied().unwrap_or_default().to_owned()
    } else {
        String::new()
    }
}

fn provider(rng: &mut impl Rng, service: &str) -> String {
    let prefix = PROVIDER_PREFIXES.choose(rng).copied().unwrap_or("さくら");
    let suffix = if service.contains("通所介護") {
        "デイサービスセンター"
    } else if service.contains("訪問看護") || service.contains("療養") {
        "訪問看護ステーション"
    } else if service.contains("訪問介護") {
        "訪問介護事業所"
    } else if service.contains("リハビリ") {
        "リハビリセンター"
    } else {
        PROVIDER_SUFFIXES.choose(rng).copied().unwrap_or("ケアセンター")
    };
    format!("{prefix}{suffix}")
}

pub fn plan(rng: &mut impl Rng, degree: u8, level: CareLevel) -> CarePlan {
    if level == CareLevel::NotApplicable {
        return CarePlan::default();
    }
    let eligible: Vec<_> = NEEDS.iter().filter(|n| n.5 <= degree).collect();
    let count = rng.gen_range(1..=3.min(eligible.len()));
    let chosen: Vec<_> = eligible.choose_multiple(rng, count).collect();
    let needs: Vec<PlanNeed> = chosen
        .iter()
        .map(|n| PlanNeed {
            need: n.0.into(),
            long_goal: n.1.into(),
            short_goal: n.2.into(),
            service: n.3.into(),
            provider: provider(rng, n.3),
            frequency: n.4.into(),
        })
        .collect();
    let days = ["月", "火", "水", "木", "金", "土"];
    let mut weekly = Vec::new();
    for need in &needs {
        let (start, end) = if need.service.starts_with("通所") { ("09:30", "16:00") } else { ("10:00", "11:00") };
        let times = match need.frequency.as_str() {
            "週3回" => 3,
            "週2回" => 2,
            "毎日" => 6,
            "週1回" => 1,
            _ => 0,
        };
        for day in days.choose_multiple(rng, times) {
            weekly.push(WeeklySlot {
                day: (*day).into(),
                start: start.into(),
                end: end.into(),
                service: need.service.clone(),
            });
        }
    }
    weekly.sort_by_key(|w| (days.iter().position(|d| *d == w.day), w.start.clone()));
    CarePlan {
        wishes: WISHES.choose(rng).copied().unwrap_or_default().to_owned(),
        policy: POLICIES.choose(rng).copied().unwrap_or_default().to_owned(),
        needs,
        weekly,
    }
}
