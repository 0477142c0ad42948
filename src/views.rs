//! Pages, as pure maud functions: a view model in, `Markup` out. Never a database row, never a
//! request; `views` does not touch the store. All text is Japanese, for the staff who use it.

use maud::{DOCTYPE, Markup, html};

/// Shown on every page when the node holds generated data: it must never be mistaken for a
/// real person's record.
pub struct Banner {
    pub synthetic: bool,
}

pub fn layout(title: &str, banner: &Banner, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="ja" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " – kaigo-field" }
                link rel="stylesheet" href="/static/style.css";
            }
            body {
                @if banner.synthetic {
                    div.banner.drill role="note" { "訓練・デモ用の合成データです（実在の人物ではありません）" }
                }
                header { h1 { "kaigo-field 災害時介護情報ノード" } }
                main { (body) }
                footer { "このノードは災害時に限り、認可された期間・地域・事業所にだけ介護情報を提供します。すべてのアクセスは記録されます。" }
            }
        }
    }
}

pub struct SnapshotView {
    pub version: u64,
    pub created_at: String,
    pub imported_at: String,
    pub record_count: u64,
    pub municipalities: String,
    pub synthetic: bool,
    pub snapshot_id: String,
}

pub struct StatusView {
    pub node_id: String,
    pub region: String,
    pub snapshot: Option<SnapshotView>,
    pub fingerprint: String,
    pub now: String,
}

pub fn status(v: &StatusView) -> Markup {
    let banner = Banner {
        synthetic: v.snapshot.as_ref().is_some_and(|s| s.synthetic),
    };
    layout(
        "ノードの状態",
        &banner,
        html! {
            section {
                h2 { "災害認可" }
                p.state-bad { "未認可：検索はできません" }
                p { "災害認可が取り込まれるまで、スナップショットの個人データは暗号化されたままで、このノード自身も読めません。認可はコーディネーターが取り込みます。" }
            }
            section {
                h2 { "スナップショット" }
                @match &v.snapshot {
                    Some(s) => dl {
                        dt { "版" } dd { (s.version) }
                        dt { "対象市区町村" } dd { (s.municipalities) }
                        dt { "人数" } dd { (s.record_count) "人" }
                        dt { "作成日時" } dd { (s.created_at) }
                        dt { "取り込み日時" } dd { (s.imported_at) }
                        dt { "データの種類" } dd { @if s.synthetic { "合成データ（訓練・デモ用）" } @else { "実データ" } }
                        dt { "ID" } dd.mono { (s.snapshot_id) }
                    },
                    None => p.state-bad { "スナップショットがありません。`kaigo-field snapshot import` で取り込んでください。" },
                }
            }
            section {
                h2 { "このノード" }
                dl {
                    dt { "ノードID" } dd.mono { (v.node_id) }
                    dt { "担当地域" } dd { (v.region) }
                    dt { "ノードの時刻" } dd { (v.now) }
                    dt { "証明書 SHA-256" } dd.mono { (v.fingerprint) }
                }
                p { "接続先が正しいか、ブラウザーに表示される証明書の指紋と上の値が一致するかを確かめてください。" }
            }
        },
    )
}

/// A page for an error: what happened and what to do, never internal detail.
pub fn error_page(title: &str, message: &str) -> Markup {
    layout(
        title,
        &Banner { synthetic: false },
        html! {
            section {
                h2 { (title) }
                p { (message) }
            }
        },
    )
}
