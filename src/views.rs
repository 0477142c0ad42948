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

pub enum AuthorizationView {
    Active {
        disaster: String,
        from: String,
        until: String,
        municipalities: String,
        drill: bool,
        records_open: usize,
        nodes: usize,
    },
    Inactive {
        clock_behind: bool,
        message: String,
    },
}

pub struct StatusView {
    pub node_id: String,
    pub region: String,
    pub snapshot: Option<SnapshotView>,
    pub authorization: AuthorizationView,
    pub fingerprint: String,
    pub now: String,
}

pub fn status(v: &StatusView) -> Markup {
    let banner = Banner { synthetic: v.snapshot.as_ref().is_some_and(|s| s.synthetic) };
    let authorization = match &v.authorization {
        AuthorizationView::Active { disaster, from, until, municipalities, drill, records_open, nodes } => html! {
            p.state-ok { "有効：検索できます" @if *drill { "（訓練）" } }
            dl {
                dt { "災害" } dd { (disaster) }
                dt { "対象市区町村" } dd { (municipalities) }
                dt { "期間" } dd { (from) " 〜 " (until) }
                dt { "開いている記録" } dd { (records_open) "人" }
                dt { "対象ノード数" } dd { (nodes) }
            }
        },
        AuthorizationView::Inactive { clock_behind, message } => html! {
            @if *clock_behind {
                p.state-bad { "時計が遅れているため停止中" }
            } @else {
                p.state-bad { "無効：検索はできません" }
            }
            p { (message) }
            p { "災害認可が有効な間だけ、スナップショットの個人データを開きます。それ以外のときは暗号化されたままで、このノード自身も読めません。" }
        },
    };
    layout(
        "ノードの状態",
        &banner,
        html! {
            section {
                h2 { "災害認可" }
                (authorization)
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

/// The search entry while an authorization is in force: staff must sign in first.
pub fn search_closed_to_anonymous(disaster: &str, drill: bool) -> Markup {
    layout(
        "検索",
        &Banner { synthetic: drill },
        html! {
            section {
                h2 { "検索" }
                p { "災害認可（" (disaster) "）は有効です。" }
                p { "検索には、コーディネーターに登録された職員としてのログインが必要です。職員の登録とログインは次の版で提供されます。" }
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
