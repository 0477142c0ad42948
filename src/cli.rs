//! The command line: parsing, dispatch and what each command prints. `anyhow` lives here and in
//! `main` only; the library below returns typed errors.

use std::fs;
use std::io::{BufWriter, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, NaiveDate, Utc};
use clap::{Args, Parser, Subcommand};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::audit::{self, Action, Actor, AuditLog, ChainWriter, CommitMode, NewEntry, Outcome, by_coordinator};
use crate::authz::{self, Role, Section};
use crate::central::{self, AuthorizeRequest, CentralDir, CentralError, SnapshotOptions};
use crate::clock::{self, SharedClock};
use crate::gate::{Gate, ImportOutcome};
use crate::http::{self, AppState};
use crate::keys::NodeSecretKey;
use crate::limits::ServerLimits;
use crate::model::MunicipalityCode;
use crate::model::PersonId;
use crate::node::{self, Node, NodeDir, describe_region};
use crate::person_csv::{self, CsvEncoding, ReadReport};
use crate::progress::Progress;
use crate::region::{self, Region};
use crate::snapshot::Manifest;
use crate::synth::{self, queries::QueryMaker};
use crate::{server, tls};

#[derive(Debug, Parser)]
#[command(
    name = "kaigo-field",
    version,
    about = "災害時に避難所で介護情報を引き継ぐためのノード（介護情報基盤のオフライン版）"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// デモ: 中央とノードを作り、合成地域のスナップショットを取り込み、HTTPSで状態ページを出す
    Demo(DemoArgs),
    /// ノードを HTTPS で動かす
    Serve(ServeArgs),
    /// 中央（基盤）側の操作
    #[command(subcommand)]
    Central(CentralCommand),
    /// ノードの設定
    #[command(subcommand)]
    Node(NodeCommand),
    /// スナップショットの検証と取り込み（ノード側）
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// 災害認可の取り込み・状態・終了（ノード側）
    #[command(subcommand)]
    Authz(AuthzCommand),
    /// ノードの時計（進めることだけができる）
    #[command(subcommand)]
    Clock(ClockCommand),
    /// 監査ログの検証・書き出し・個人ごとのアクセス一覧
    #[command(subcommand)]
    Audit(AuditCommand),
    /// 職員の登録（検索できる人）
    #[command(subcommand)]
    Staff(StaffCommand),
}

#[derive(Debug, Subcommand)]
pub enum StaffCommand {
    /// 職員を登録し、1回限りのログインコードと API トークンを表示する（事業所は認可の対象であること）
    Add {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        name: String,
        /// 事業所番号（10桁）
        #[arg(long)]
        facility: String,
        /// support（支援者）, receiving（受入施設）, coordinator（調整役）
        #[arg(long)]
        role: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// ハッシュチェーンと署名を検証する（不正があれば最初の番号を示し、終了コード 1）
    Verify {
        #[arg(long)]
        dir: PathBuf,
    },
    /// 監査ログを書き出す（JSON Lines、または FHIR AuditEvent 形式）
    Export {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value_t = 1)]
        from: u64,
        /// jsonl（既定）か fhir
        #[arg(long, default_value = "jsonl")]
        format: String,
    },
    /// ある人の記録に、このノードで誰がいつ何のためにアクセスしたか
    Person {
        #[arg(long)]
        dir: PathBuf,
        /// 個人ID（32桁の16進数）
        person_id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuthzCommand {
    /// 認可を取り込む: ファイル（.kfauth）か、--text で認可コード
    Import {
        #[arg(long)]
        dir: PathBuf,
        /// 認可ファイル
        file: Option<PathBuf>,
        /// 認可コード（KFA1-…）。読み上げ・メッセージで受け取ったもの
        #[arg(long, conflicts_with = "file")]
        text: Option<String>,
    },
    /// 認可の状態を表示する
    Status {
        #[arg(long)]
        dir: PathBuf,
    },
    /// 認可を終了する（鍵を消し、検索を止める）
    Close {
        #[arg(long)]
        dir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum ClockCommand {
    /// ノードの時刻を進める（戻すことはできない。記録される）
    Forward {
        #[arg(long)]
        dir: PathBuf,
        /// 新しい時刻（RFC 3339、時差つき。例 2024-01-01T16:10:00+09:00）
        #[arg(long, value_parser = parse_time)]
        to: DateTime<Utc>,
        /// 確認なしで進める（スクリプト用。なければ端末で確認する）
        #[arg(long)]
        yes: bool,
    },
}

/// RFC 3339 with an offset, as the issue and the coordinator write times.
fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| format!("時刻は RFC 3339 の時差つきで書いてください（例 2024-01-01T16:10:00+09:00）: {s}"))
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// デモの置き場所（既定: 一時ディレクトリの kaigo-field-demo）
    #[arg(long)]
    pub dir: Option<PathBuf>,
    #[arg(long, default_value = "127.0.0.1:8443")]
    pub listen: SocketAddr,
    /// 合成する人数
    #[arg(long, default_value_t = 50_000)]
    pub persons: u64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// 合成する市区町村（6桁コード、カンマ区切り）
    #[arg(long, default_value = "172049,172057,174611,174637")]
    pub municipalities: String,
    /// 既存のデモを消して作り直す
    #[arg(long)]
    pub fresh: bool,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[arg(long)]
    pub dir: PathBuf,
    #[arg(long, default_value = "127.0.0.1:8443")]
    pub listen: SocketAddr,
}

#[derive(Debug, Subcommand)]
pub enum CentralCommand {
    /// 中央の署名鍵とノード証明書用の認証局を作る
    Init {
        #[arg(long)]
        dir: PathBuf,
    },
    /// 合成の人口（人物CSV）と、正解つきの検索問い合わせを作る
    Synth(SynthArgs),
    /// 人物CSVを検証し、署名・暗号化した地域スナップショットを作る
    Snapshot(SnapshotArgs),
    /// ノードを登録し、プロビジョニングバンドル（鍵・証明書）を作る
    EnrollNode {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        node_id: String,
        /// 担当地域: 市区町村コード（6桁）か都道府県コード（2桁）のカンマ区切り
        #[arg(long)]
        region: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// 災害認可を発行する（署名つき・期限つき）
    Authorize(AuthorizeArgs),
}

#[derive(Debug, Args)]
pub struct AuthorizeArgs {
    #[arg(long)]
    pub dir: PathBuf,
    /// 災害名（例 令和6年能登半島地震）
    #[arg(long)]
    pub disaster: String,
    /// 対象の市区町村コード（カンマ区切り）
    #[arg(long)]
    pub municipalities: String,
    /// 対象のノードID（カンマ区切り）
    #[arg(long)]
    pub nodes: String,
    /// 事業所: 10桁の事業所番号、または先頭の桁に * を付けたもの（カンマ区切り。既定: 対象の都道府県すべて）
    #[arg(long)]
    pub facilities: Option<String>,
    #[arg(long, value_parser = parse_time)]
    pub not_before: Option<DateTime<Utc>>,
    #[arg(long, value_parser = parse_time, conflicts_with = "days")]
    pub not_after: Option<DateTime<Utc>>,
    /// 有効日数（既定 7日）
    #[arg(long)]
    pub days: Option<u32>,
    /// 訓練用（合成データのスナップショットにだけ使える）
    #[arg(long)]
    pub drill: bool,
    /// 認可ID（延長・取り消しでは同じIDに大きい連番で出し直す）
    #[arg(long)]
    pub id: Option<String>,
    #[arg(long, requires = "id")]
    pub serial: Option<u32>,
    /// 鍵を運ぶスナップショットのID（既定: 対象市区町村をすべて含む最新）
    #[arg(long)]
    pub snapshot: Option<String>,
    /// 役割ごとの閲覧範囲: "support=card,contact;receiving=..."（既定は ARCHITECTURE.md 参照）
    #[arg(long)]
    pub sections: Option<String>,
    #[arg(long)]
    pub out: PathBuf,
    /// 認可コードを標準出力の最後の行に出す
    #[arg(long)]
    pub text: bool,
    /// 認可コードのQRコード（SVG）の出力先
    #[arg(long)]
    pub qr: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct SynthArgs {
    /// 6桁の市区町村コード（カンマ区切り）
    #[arg(long)]
    pub municipalities: String,
    #[arg(long)]
    pub persons: u64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[arg(long)]
    pub out: PathBuf,
    /// 正解つきの問い合わせ（JSON Lines）の出力先
    #[arg(long)]
    pub queries: Option<PathBuf>,
    #[arg(long, default_value_t = 1000)]
    pub query_count: u64,
    /// 年齢や認定期間の基準日（既定 2026-10-01。日付を変えない限り出力は同じ）
    #[arg(long)]
    pub as_of: Option<NaiveDate>,
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct SnapshotArgs {
    #[arg(long)]
    pub dir: PathBuf,
    #[arg(long)]
    pub input: PathBuf,
    #[arg(long)]
    pub out: PathBuf,
    /// auto（既定）, utf-8, shift_jis
    #[arg(long, default_value = "auto")]
    pub encoding: String,
    /// 誤りのある行を除いて作る（件数を報告）
    #[arg(long)]
    pub skip_invalid: bool,
    /// 合成データ（訓練・デモ用）として印を付ける。実データには付けないこと
    #[arg(long)]
    pub synthetic: bool,
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// ノードのディレクトリを作り、プロビジョニングバンドルを取り込む
    Init {
        #[arg(long)]
        dir: PathBuf,
        /// `central enroll-node` が作ったバンドル
        #[arg(long)]
        bundle: PathBuf,
        /// ノード鍵をパスフレーズで封印する（起動のたびに入力が要る。環境変数 KAIGO_FIELD_PASSPHRASE でも可）
        #[arg(long)]
        seal: bool,
        /// 最初のコーディネーターの氏名（パスフレーズは端末で尋ねる。環境変数
        /// KAIGO_FIELD_COORDINATOR_PASSPHRASE でも可。端末がなく指定もなければ生成して1回だけ表示）
        #[arg(long, default_value = "コーディネーター")]
        coordinator: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// スナップショットを検証する（署名・改ざん・地域・版）。データ鍵は要らない
    Verify {
        #[arg(long)]
        dir: PathBuf,
        file: PathBuf,
        #[arg(long)]
        quiet: bool,
    },
    /// スナップショットを検証して取り込む（途中で止まっても前の版が使われ続ける）
    Import {
        #[arg(long)]
        dir: PathBuf,
        file: PathBuf,
        #[arg(long)]
        quiet: bool,
    },
}

pub fn run(cli: Cli) -> Result<()> {
    let clock = clock::system();
    match cli.command {
        Command::Demo(args) => demo(args, clock),
        Command::Serve(args) => serve(&NodeDir::new(args.dir), args.listen, clock, None),
        Command::Central(CentralCommand::Init { dir }) => {
            let key = central::init(&CentralDir::new(&dir), clock.as_ref())?;
            println!("中央を作りました: {}", dir.display());
            println!(
                "公開鍵: {}（鍵ID {}）ノードにはこのファイルを渡します",
                dir.join("central.pub").display(),
                key.key_id()
            );
            Ok(())
        }
        Command::Central(CentralCommand::Synth(args)) => synth_command(&args),
        Command::Central(CentralCommand::Snapshot(args)) => snapshot_command(&args, &clock),
        Command::Central(CentralCommand::EnrollNode { dir, node_id, region, out }) => {
            let region = Region::parse(&region)?;
            let public = central::enroll_node(&CentralDir::new(&dir), &node_id, &region, &out, clock.as_ref())?;
            println!(
                "ノード {node_id} を登録しました（担当地域: {}、鍵ID {}）",
                describe_region(&region),
                public.key_id()
            );
            println!(
                "バンドル: {}（秘密のファイルです。ノードで `node init --bundle` した後は消してください）",
                out.display()
            );
            Ok(())
        }
        Command::Central(CentralCommand::Authorize(args)) => authorize_command(&args, &clock).map(|_| ()),
        Command::Node(NodeCommand::Init { dir, bundle, seal, coordinator }) => {
            let passphrase = if seal { Some(new_passphrase()?) } else { None };
            // Asked and checked before anything is written, so a refused passphrase leaves no
            // half-made node behind.
            let (chosen, generated) = coordinator_passphrase()?;
            crate::staff::check_new_secret(&chosen)?;
            let info = node::init(&NodeDir::new(&dir), &bundle, passphrase.as_deref().map(|p| p.as_str()))?;
            let mut node = Node::open(&NodeDir::new(&dir))?;
            let id =
                first_coordinator(&mut node, &coordinator, &chosen, passphrase.as_deref().map(|p| p.as_str()), &clock)?;
            println!("ノードを作りました: {}", dir.display());
            println!(
                "ノードID: {}  担当地域: {}  中央の鍵ID: {}{}",
                info.node_id,
                describe_region(&info.region),
                info.central_key.key_id(),
                if seal { "  ノード鍵: パスフレーズで封印" } else { "" }
            );
            println!("最初のコーディネーター: 職員ID {id}（{}）", coordinator.trim());
            if generated {
                println!("パスフレーズ（この1回だけ表示します。控えてください）: {}", chosen.as_str());
            }
            Ok(())
        }
        Command::Authz(AuthzCommand::Import { dir, file, text }) => {
            let code = match (file, text) {
                (_, Some(text)) => text,
                (Some(file), None) => {
                    fs::read_to_string(&file).with_context(|| format!("{} を読めません", file.display()))?
                }
                (None, None) => bail!("認可ファイルか --text で認可コードを指定してください"),
            };
            let mut node = Node::open(&NodeDir::new(dir))?;
            let secret = Arc::new(open_secret(&node)?);
            match import_authorization(&mut node, &code, secret, &clock)? {
                ImportOutcome::Activated { id, serial, until } => {
                    println!("認可を取り込みました（{id} 連番 {serial}）。{} まで検索できます。", authz::jst(until));
                }
                ImportOutcome::Closed { id, serial } => {
                    println!("認可 {id} は連番 {serial} で終了しました。検索はできません。");
                }
            }
            Ok(())
        }
        Command::Authz(AuthzCommand::Status { dir }) => {
            let mut node = Node::open(&NodeDir::new(dir))?;
            node.note_running_time(clock.as_ref())?;
            match node.check_access(clock.as_ref()) {
                Ok(row) => println!(
                    "有効: {}（{} 連番 {}）{} 〜 {}{}",
                    crate::model::text::terminal_safe(&row.disaster),
                    crate::model::text::terminal_safe(&row.id),
                    row.serial,
                    authz::jst(row.not_before),
                    authz::jst(row.not_after),
                    if row.drill { "  訓練" } else { "" }
                ),
                Err(denied) => println!("無効: {}", crate::model::text::terminal_safe(&denied.to_string())),
            }
            Ok(())
        }
        Command::Authz(AuthzCommand::Close { dir }) => {
            let node = Node::open(&NodeDir::new(dir))?;
            let writer = node.writer(Arc::new(open_secret(&node)?), clock.clone());
            let closed = node.close_authorization(clock.as_ref(), &writer, &by_coordinator)?;
            match closed {
                Some(id) => println!("認可 {id} を終了しました。鍵は消え、検索はできません。"),
                None => println!("有効な認可はありません。"),
            }
            Ok(())
        }
        Command::Audit(AuditCommand::Verify { dir }) => {
            let node = Node::open(&NodeDir::new(dir))?;
            match node.verify_audit()? {
                Ok(report) => {
                    println!(
                        "監査ログは正常です: {} 件、署名つきチェックポイント {} 件、封印の期 {}、先頭ハッシュ {}",
                        report.entries, report.checkpoints, report.epoch, report.head_hash
                    );
                    println!(
                        "このノードで確かめたこと: 初期設定からの記録のつながり、チェックポイントの署名、封印の期の順序。"
                    );
                    println!(
                        "このノードだけでは分からないこと: 最新の記録をチェックポイントごと消す切り詰めと、ノードの鍵を持つ者による書き換えは、最初の封印鍵を持つ中央との照合でだけ見つかります。"
                    );
                    Ok(())
                }
                Err(fault) => bail!("{fault}"),
            }
        }
        Command::Audit(AuditCommand::Export { dir, from, format }) => {
            let node = Node::open(&NodeDir::new(dir))?;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            for e in node.store.audit_entries(from)? {
                let line = match format.as_str() {
                    "jsonl" => serde_json::to_string(&e)?,
                    "fhir" => audit::fhir_audit_event(&e, &node.info.node_id).to_string(),
                    other => bail!("--format {other} は使えません: jsonl か fhir"),
                };
                writeln!(out, "{line}")?;
            }
            out.flush()?;
            Ok(())
        }
        Command::Audit(AuditCommand::Person { dir, person_id }) => {
            let person = PersonId::parse(&person_id)?;
            let node = Node::open(&NodeDir::new(dir))?;
            let entries = node.store.audit_entries_for(person.as_str())?;
            if entries.is_empty() {
                println!("このノードでは、この人の記録へのアクセスはありません。");
            }
            // Stored text is shown escaped: an entry must not be able to rewrite the terminal.
            let safe = |t: &str| crate::model::text::terminal_safe(t).into_owned();
            for e in entries {
                println!(
                    "{}  {}  {}  事業所 {}  {}  目的: {}  結果: {}",
                    safe(&e.wall_time),
                    safe(&e.operator),
                    safe(e.role.as_deref().unwrap_or("-")),
                    safe(e.facility.as_deref().unwrap_or("-")),
                    safe(&e.action),
                    safe(e.purpose.as_deref().unwrap_or("-")),
                    safe(&e.outcome)
                );
            }
            Ok(())
        }
        Command::Staff(StaffCommand::Add { dir, name, facility, role }) => {
            let role = Role::parse(&role)
                .with_context(|| format!("役割 {role} はありません（support, receiving, coordinator）"))?;
            let mut node = Node::open(&NodeDir::new(dir))?;
            let writer = node.writer(Arc::new(open_secret(&node)?), clock.clone());
            let enrolled = node.enrol(&name, &facility, role, clock.as_ref(), &writer, &by_coordinator)?;
            println!(
                "職員 {} を登録しました（{}、事業所 {}、{}）。",
                enrolled.id,
                crate::model::text::terminal_safe(name.trim()),
                crate::model::text::terminal_safe(facility.trim()),
                role.label()
            );
            println!("ログインコード（1回限り）: {}", enrolled.login_code.as_str());
            println!("API トークン（この1回だけ表示します。安全に渡してください）:");
            println!("{}", enrolled.token.as_str());
            Ok(())
        }
        Command::Clock(ClockCommand::Forward { dir, to, yes }) => {
            let node = Node::open(&NodeDir::new(dir))?;
            let writer = node.writer(Arc::new(open_secret(&node)?), clock.clone());
            // The bounds first, then the question, as the page asks it: a wrong year moves the
            // node past every authorization's end.
            let now = node.check_clock_move(to, clock.as_ref())?;
            if !yes {
                confirm_clock_move(now, to)?;
            }
            let before = node.move_clock_forward(to, clock.as_ref(), &writer, &by_coordinator)?;
            println!("ノードの時刻を {} から {} に進めました（記録しました）。", authz::jst(before), authz::jst(to));
            Ok(())
        }
        Command::Snapshot(SnapshotCommand::Verify { dir, file, quiet }) => {
            let node = Node::open(&NodeDir::new(dir))?;
            let m = node.verify(&file, quiet)?;
            println!("検証に成功しました。このノードに取り込めます。");
            print_manifest(&m);
            Ok(())
        }
        Command::Snapshot(SnapshotCommand::Import { dir, file, quiet }) => {
            let mut node = Node::open(&NodeDir::new(dir))?;
            let secret = Arc::new(open_secret(&node)?);
            let m = import_snapshot(&mut node, &file, secret, &clock, quiet)?;
            println!("取り込みました。");
            print_manifest(&m);
            Ok(())
        }
    }
}

fn print_manifest(m: &Manifest) {
    println!("  版: {}  人数: {}  市区町村: {}", m.snapshot_version, m.record_count, region::names(&m.municipalities));
    println!(
        "  作成: {}  合成データ: {}  ID: {}",
        authz::jst(m.created_at),
        if m.synthetic { "はい" } else { "いいえ" },
        m.snapshot_id
    );
}

fn parse_municipalities(s: &str) -> Result<Vec<MunicipalityCode>> {
    let codes = s
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(MunicipalityCode::parse)
        .collect::<Result<Vec<_>, _>>()?;
    if codes.is_empty() {
        bail!("--municipalities に6桁の市区町村コードを1つ以上指定してください（例: 172049,172057）");
    }
    Ok(codes)
}

pub fn synth_command(args: &SynthArgs) -> Result<()> {
    let codes = parse_municipalities(&args.municipalities)?;
    if args.persons > crate::limits::SYNTH_PERSONS_MAX {
        bail!("--persons は {} 人までです", crate::limits::SYNTH_PERSONS_MAX);
    }
    let params = synth::Params {
        municipalities: codes,
        persons: args.persons,
        seed: args.seed,
        as_of: args.as_of.unwrap_or_else(synth::default_as_of),
    };
    let mut generator = synth::Generator::new(params.clone())?;
    // Personal data (synthetic here, but the format of the real thing): 0600, like everything else.
    let out = crate::keys::create_private_file(&args.out)?;
    let mut writer = person_csv::Writer::new(BufWriter::with_capacity(1 << 20, out))?;
    let mut queries = args.queries.as_ref().map(|_| QueryMaker::new(args.seed, args.persons, args.query_count));
    let mut progress = Progress::new("合成", args.persons, args.quiet);
    for i in 0..args.persons {
        let p = generator.person();
        if let Some(q) = queries.as_mut() {
            q.observe(i, &p);
        }
        writer.write(&p)?;
        progress.add(1);
    }
    writer.finish()?.flush()?;
    progress.finish();
    if let (Some(path), Some(maker)) = (&args.queries, queries) {
        let mut absent = synth::Generator::new(synth::Params { seed: params.seed ^ 0xAB5E_0000_0000_0001, ..params })?;
        let list = maker.finish(|| absent.person());
        let mut w = BufWriter::new(crate::keys::create_private_file(path)?);
        for q in &list {
            serde_json::to_writer(&mut w, q)?;
            w.write_all(b"\n")?;
        }
        w.flush()?;
        eprintln!("問い合わせ {} 件を {} に書きました", list.len(), path.display());
    }
    eprintln!("{} 人を {} に書きました", args.persons, args.out.display());
    Ok(())
}

fn print_report(r: &ReadReport) {
    if let Some(e) = r.encoding {
        eprintln!("文字コード: {e}");
    }
    // A problem may quote what the file holds: shown escaped, never as control characters.
    for p in &r.errors {
        eprintln!("誤り: {}", crate::model::text::terminal_safe(&p.to_string()));
    }
    if r.rows_with_errors as usize > r.errors.len() {
        eprintln!("（ほかにも誤りがあります。表示は先頭 {} 件まで）", r.errors.len());
    }
    for w in &r.warnings {
        eprintln!("注意: {}", crate::model::text::terminal_safe(&w.to_string()));
    }
    if r.warning_count as usize > r.warnings.len() {
        eprintln!("（注意はほかに {} 件）", r.warning_count as usize - r.warnings.len());
    }
    eprintln!("行数 {}、有効 {}、誤りのある行 {}、注意 {}", r.rows, r.valid, r.rows_with_errors, r.warning_count);
}

pub fn snapshot_command(args: &SnapshotArgs, clock: &SharedClock) -> Result<()> {
    let encoding = match args.encoding.as_str() {
        "auto" => None,
        other => Some(
            CsvEncoding::parse(other)
                .with_context(|| format!("--encoding {other} は使えません: auto, utf-8, shift_jis のいずれか"))?,
        ),
    };
    let options =
        SnapshotOptions { encoding, skip_invalid: args.skip_invalid, synthetic: args.synthetic, quiet: args.quiet };
    match central::build_snapshot(&CentralDir::new(&args.dir), &args.input, &args.out, &options, clock.as_ref()) {
        Ok(outcome) => {
            print_report(&outcome.report);
            if outcome.report.rows_with_errors > 0 {
                eprintln!("--skip-invalid: 誤りのある {} 行を除きました", outcome.report.rows_with_errors);
            }
            println!("スナップショットを作りました: {}", args.out.display());
            print_manifest(&outcome.manifest);
            Ok(())
        }
        Err(CentralError::InvalidRows { rows, report }) => {
            print_report(&report);
            Err(CentralError::InvalidRows { rows, report }.into())
        }
        Err(e) => Err(e.into()),
    }
}

/// Imports a snapshot and records the attempt, whatever its outcome, in the audit log.
fn import_snapshot(
    node: &mut Node,
    file: &Path,
    secret: Arc<NodeSecretKey>,
    clock: &SharedClock,
    quiet: bool,
) -> Result<Manifest> {
    let writer = node.writer(secret, clock.clone());
    Ok(node.import(file, clock.as_ref(), quiet, &writer, &by_coordinator)?)
}

/// Imports an authorization and records the attempt (refusals too) in the audit log.
fn import_authorization(
    node: &mut Node,
    code: &str,
    secret: Arc<NodeSecretKey>,
    clock: &SharedClock,
) -> Result<ImportOutcome> {
    let writer = node.writer(secret.clone(), clock.clone());
    Ok(node.import_authorization(code, &secret, clock.as_ref(), &writer, &by_coordinator)?)
}

/// Extra lines printed once the server is listening (the demo's logins), given the URL and
/// the certificate fingerprint.
type Banner = dyn Fn(&str, &str) -> Vec<String>;

/// The passphrase for a sealed node key: from KAIGO_FIELD_PASSPHRASE, or asked on the terminal.
fn open_secret(node: &Node) -> Result<NodeSecretKey> {
    let sealed = NodeSecretKey::is_sealed(&node.dir.node_key())?;
    let passphrase = if sealed {
        Some(match std::env::var("KAIGO_FIELD_PASSPHRASE") {
            Ok(p) => zeroize::Zeroizing::new(p),
            Err(_) => zeroize::Zeroizing::new(
                rpassword::prompt_password("ノード鍵のパスフレーズ: ").context("パスフレーズを読めません")?,
            ),
        })
    } else {
        None
    };
    Ok(node.secret_key(passphrase.as_deref().map(|p| p.as_str()))?)
}

fn new_passphrase() -> Result<zeroize::Zeroizing<String>> {
    if let Ok(p) = std::env::var("KAIGO_FIELD_PASSPHRASE") {
        return Ok(zeroize::Zeroizing::new(p));
    }
    let first = zeroize::Zeroizing::new(rpassword::prompt_password("新しいパスフレーズ: ")?);
    let second = zeroize::Zeroizing::new(rpassword::prompt_password("もう一度: ")?);
    if first != second {
        bail!("パスフレーズが一致しません");
    }
    if first.chars().count() < 8 {
        bail!("パスフレーズは8文字以上にしてください");
    }
    Ok(first)
}

/// The first coordinator's passphrase: from KAIGO_FIELD_COORDINATOR_PASSPHRASE, asked on the
/// terminal (empty: generate one), or generated when there is no terminal. True if generated.
fn coordinator_passphrase() -> Result<(zeroize::Zeroizing<String>, bool)> {
    use std::io::IsTerminal;
    if let Ok(p) = std::env::var("KAIGO_FIELD_COORDINATOR_PASSPHRASE") {
        return Ok((zeroize::Zeroizing::new(p), false));
    }
    if std::io::stdin().is_terminal() {
        let first = zeroize::Zeroizing::new(rpassword::prompt_password(
            "最初のコーディネーターのパスフレーズ（8文字以上。空なら生成します）: ",
        )?);
        if !first.is_empty() {
            let second = zeroize::Zeroizing::new(rpassword::prompt_password("もう一度: ")?);
            if first != second {
                bail!("パスフレーズが一致しません");
            }
            return Ok((first, false));
        }
    }
    Ok((crate::staff::generated_passphrase(), true))
}

/// Makes the node's first coordinator (who works without an authorization) and audits it.
fn first_coordinator(
    node: &mut Node,
    name: &str,
    passphrase: &str,
    key_passphrase: Option<&str>,
    clock: &SharedClock,
) -> Result<String> {
    let writer = node.writer(Arc::new(node.secret_key(key_passphrase)?), clock.clone());
    Ok(node.enrol_first_coordinator(name, passphrase, clock.as_ref(), &writer)?)
}

/// "support=card,contact;receiving=card" into role sections.
fn parse_sections(s: &str) -> Result<Vec<(Role, Vec<Section>)>> {
    let mut out = Vec::new();
    for part in s.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (role, list) = part.split_once('=').context("--sections は 役割=項目,項目;役割=… の形です")?;
        let role = Role::parse(role.trim())
            .with_context(|| format!("役割 {role} はありません（support, receiving, coordinator）"))?;
        let sections = list
            .split(',')
            .map(|x| {
                Section::parse(x.trim()).with_context(|| {
                    let names: Vec<&str> = Section::ALL.iter().map(|s| s.name()).collect();
                    format!("項目 {x} はありません（{}）", names.join(", "))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        out.push((role, sections));
    }
    Ok(out)
}

pub fn authorize_command(args: &AuthorizeArgs, clock: &SharedClock) -> Result<String> {
    let req = AuthorizeRequest {
        disaster: args.disaster.clone(),
        municipalities: parse_municipalities(&args.municipalities)?,
        nodes: args.nodes.split(',').map(str::trim).filter(|n| !n.is_empty()).map(str::to_owned).collect(),
        facilities: args
            .facilities
            .as_deref()
            .map(|f| f.split(',').map(str::trim).filter(|x| !x.is_empty()).map(str::to_owned).collect())
            .unwrap_or_default(),
        not_before: args.not_before,
        not_after: args.not_after,
        days: args.days,
        drill: args.drill,
        id: args.id.clone(),
        serial: args.serial,
        snapshot_id: args.snapshot.clone(),
        sections: args.sections.as_deref().map(parse_sections).transpose()?,
    };
    let (a, code) = central::authorize(&CentralDir::new(&args.dir), &req, clock.as_ref())?;
    // The code carries each node's wrapped data key: readable by its owner only, until it is
    // handed over.
    crate::keys::write_secret_file(&args.out, format!("{code}\n").as_bytes())?;
    if let Some(qr) = &args.qr {
        crate::keys::write_secret_file(qr, authz::qr_svg(&code)?.as_bytes())?;
    }
    println!(
        "認可 {} 連番 {} を発行しました: {}（{}）{} 〜 {}{}",
        a.id,
        a.serial,
        a.disaster,
        region::names(&a.municipalities),
        authz::jst(a.not_before()),
        authz::jst(a.not_after()),
        if a.drill { "  訓練" } else { "" }
    );
    println!("ノード: {}  ファイル: {}（{} 文字）", req.nodes.join(", "), args.out.display(), code.len());
    if args.text {
        println!("{code}");
    }
    Ok(code)
}

/// Asks on the terminal before the clock moves; without a terminal, `--yes` is needed.
fn confirm_clock_move(now: DateTime<Utc>, to: DateTime<Utc>) -> Result<()> {
    use std::io::{BufRead, IsTerminal};
    let question = format!(
        "ノードの時刻を {} から {} に進めます（{}進みます。戻せません）。日付（特に年）は正しいですか？ [y/N]: ",
        authz::jst(now),
        authz::jst(to),
        crate::views::duration_words(to - now)
    );
    if !std::io::stdin().is_terminal() {
        bail!("{question}\n端末がないため確認できません。確かめたうえで --yes をつけて実行してください");
    }
    eprint!("{question}");
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer).context("答えを読めません")?;
    if !matches!(answer.trim(), "y" | "Y" | "yes" | "はい") {
        bail!("時計は進めませんでした");
    }
    Ok(())
}

/// Serves a node until SIGINT or SIGTERM. `banner` prints extra lines once listening.
fn serve(dir: &NodeDir, listen: SocketAddr, clock: SharedClock, banner: Option<&Banner>) -> Result<()> {
    let node = Node::open(dir)?;
    let secret = Arc::new(open_secret(&node)?);
    // A log that does not verify cannot vouch for anything served from here on: refuse to start.
    // What was written since the last start is verified (the whole log: `audit verify`).
    if let Err(fault) = node.verify_audit_at_start(&secret)? {
        bail!(
            "{fault}。監査ログが改ざん・破損しているため起動しません。`kaigo-field audit verify` で確認し、中央に連絡してください"
        );
    }
    let writer = ChainWriter::new(&node.info.node_id, secret.clone(), dir.audit_seal(), clock.clone());
    let audit = Arc::new(AuditLog::start(crate::store::Store::open(&dir.db())?, writer.clone(), CommitMode::Group));
    let drill = node.current_manifest()?.is_some_and(|(_, m)| m.synthetic);
    let rate = search_rate_from_log(&node, clock.as_ref())?;
    let identity = tls::ensure_server_identity(&dir.tls(), &node.info.node_id, node.now(clock.as_ref())?)?;
    let fingerprint = identity.fingerprint.clone();
    let config = tls::server_config(identity)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("tokio を起動できません")?;
    runtime.block_on(async move {
        // The signal handlers first: SIGTERM stops the node cleanly from here on.
        let shutdown = CancellationToken::new();
        tokio::spawn(server::cancel_on_signal(shutdown.clone()).context("シグナルを受け取れません")?);
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("{listen} で待ち受けできません（使用中ではありませんか）"))?;
        let addr = listener.local_addr()?;
        let url = format!("https://{addr}/");
        say(&format!("URL: {url}"));
        say(&format!("証明書 SHA-256: {fingerprint}"));
        if let Some(b) = banner {
            b(&url, &fingerprint).iter().for_each(|line| say(line));
        }
        say("停止するには Ctrl-C を押してください。");
        audit.record(NewEntry::by(Actor::Node, Action::NodeStart, Outcome::Ok, url.clone())).await?;
        let state = AppState {
            node: Arc::new(Mutex::new(node)),
            gate: Arc::new(Gate::new()),
            secret,
            audit: audit.clone(),
            writer,
            clock,
            fingerprint,
            url: url.clone(),
            drill: Arc::new(std::sync::atomic::AtomicBool::new(drill)),
            rate: Arc::new(rate),
            throttle: crate::throttle::Throttle::new(),
        };
        let keeper = tokio::spawn(http::keep_time(state.clone(), shutdown.clone()));
        server::run(listener, config, http::router(state.clone()), shutdown.clone(), ServerLimits::default()).await?;
        shutdown.cancel();
        keeper.await.context("時刻の見張りが異常終了しました")?;
        state.gate.close();
        http::write_refusal_summaries(&state, true).await;
        // The last entry and its signed checkpoint: the log is closed cleanly.
        audit.record(NewEntry::by(Actor::Node, Action::NodeStop, Outcome::Ok, "shutdown")).await?;
        drop(state);
        if let Ok(audit) = Arc::try_unwrap(audit) {
            audit.stop();
        }
        say("停止しました。");
        Ok(())
    })
}

/// A line on standard output for whoever started the server, pushed out at once (tests and
/// service managers read it from a pipe). A closed or full output never stops the server: the
/// line is lost, the node goes on.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

/// The per-operator search counts of the last window, from the audit log, so that a restart
/// gives nobody a fresh allowance.
fn search_rate_from_log(node: &Node, clock: &dyn crate::clock::Clock) -> Result<crate::api::RateLimiter> {
    let now = node.now(clock)?;
    let since = now - chrono::Duration::seconds(crate::limits::SEARCH_RATE_WINDOW_SECONDS as i64);
    let searches = node.store.searches_since(&since.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))?;
    Ok(crate::api::RateLimiter::seeded(searches.into_iter().filter_map(|(operator, at)| {
        let at = DateTime::parse_from_rfc3339(&at).ok()?.with_timezone(&Utc);
        Some((operator, (now - at).num_milliseconds() as f64 / 1000.0))
    })))
}

fn demo(args: DemoArgs, clock: SharedClock) -> Result<()> {
    let root = args.dir.clone().unwrap_or_else(|| std::env::temp_dir().join("kaigo-field-demo"));
    let node_dir = NodeDir::new(root.join("node"));
    if args.fresh && root.exists() {
        fs::remove_dir_all(&root).with_context(|| format!("{} を消せません", root.display()))?;
    }
    if node_dir.db().exists() {
        println!("既存のデモを使います: {}（作り直すには --fresh）", root.display());
        let mut node = Node::open(&node_dir)?;
        if node.check_access(clock.as_ref()).is_err() {
            // The drill window of an earlier run is over: issue a fresh one, as a coordinator
            // would ask the central for.
            demo_authorize(&root, &mut node, &args, &clock)?;
        }
    } else {
        demo_setup(&root, &node_dir, &args, &clock)?;
    }
    let persons = args.persons;
    let logins = fs::read_to_string(root.join(DEMO_LOGINS_FILE)).unwrap_or_default();
    let token = fs::read_to_string(root.join(DEMO_TOKEN_FILE)).unwrap_or_default().trim().to_owned();
    let ca = node_dir.tls().join("ca.pem");
    let example = demo_example_query(&root).unwrap_or_default();
    serve(
        &node_dir,
        args.listen,
        clock,
        Some(&move |url: &str, _fp: &str| {
            let mut lines = vec![
                format!(
                    "デモ: 合成地域 {persons} 人のスナップショットと、72時間の訓練用の災害認可を取り込み済みです。"
                ),
                format!(
                    "ブラウザーで {url}login を開き、次のどれかでログインしてください（職員ID / パスフレーズ・PIN）:"
                ),
            ];
            lines.extend(logins.lines().map(|line| format!("  {line}")));
            lines.push("API（支援者のトークン）での検索の例:".to_owned());
            lines.push(format!(
                "  curl --cacert {} -H 'Authorization: Bearer {token}' -H 'Content-Type: application/json' -d '{example}' {url}api/v1/search",
                ca.display()
            ));
            lines
        }),
    )
}

const DEMO_TOKEN_FILE: &str = "demo-staff.token";
const DEMO_FACILITY: &str = "1772090005";
const DEMO_RECEIVING_FACILITY: &str = "1772090013";

/// A search for one person of the synthetic region, as a neighbour would tell it.
fn demo_example_query(root: &Path) -> Option<String> {
    let mut reader = csv::Reader::from_path(root.join("persons.csv")).ok()?;
    let headers = reader.headers().ok()?.clone();
    let row = reader.records().nth(3)?.ok()?;
    let get = |name: &str| headers.iter().position(|h| h == name).and_then(|i| row.get(i)).unwrap_or("");
    let kana =
        crate::model::kana::katakana_to_hiragana(&format!("{} {}", get("family_name_kana"), get("given_name_kana")));
    let birth = NaiveDate::parse_from_str(get("birth_date"), "%Y-%m-%d").ok()?;
    let wareki = crate::model::wareki::to_wareki(birth)?.kanji();
    let sex = if get("sex") == "1" { "男" } else { "女" };
    Some(serde_json::json!({ "name": kana, "birth_date": wareki, "sex": sex }).to_string())
}

const DEMO_LOGINS_FILE: &str = "demo-logins.txt";

/// The demo's people, one per role, with secrets already set so anyone can try each role. The
/// logins are kept (mode 0600) in the demo directory: a drill, opening only synthetic data.
fn demo_staff(root: &Path, node: &mut Node, clock: &SharedClock) -> Result<()> {
    let secret = Arc::new(node.secret_key(None)?);
    let now = node.now(clock.as_ref())?;
    let passphrase = crate::staff::generated_passphrase();
    let (coordinator, _) = crate::staff::add_first_coordinator(&node.store, "デモ 調整役", &passphrase, now)?;
    let mut lines =
        vec![format!("{} {}（{}）: {}", coordinator, "デモ 調整役", Role::Coordinator.label(), passphrase.as_str())];
    let mut entries = vec![NewEntry {
        role: Some(Role::Coordinator),
        ..NewEntry::by(Actor::Coordinator, Action::Enrol, Outcome::Ok, coordinator.clone())
    }];
    let authorization = node.active_authorization(clock.as_ref())?;
    for (name, facility, role) in
        [("デモ 支援者", DEMO_FACILITY, Role::Support), ("デモ 受入施設", DEMO_RECEIVING_FACILITY, Role::Receiving)]
    {
        let enrolled = crate::staff::add(&node.store, authorization.as_ref(), name, facility, role, now)?;
        let pin = crate::staff::generated_passphrase();
        node.store.set_staff_secret(&enrolled.id, &crate::staff::new_secret_hash(&pin)?)?;
        lines.push(format!("{} {name}（{}、事業所 {facility}）: {}", enrolled.id, role.label(), pin.as_str()));
        entries.push(NewEntry {
            facility: Some(facility.to_owned()),
            role: Some(role),
            ..NewEntry::by(Actor::Coordinator, Action::Enrol, Outcome::Ok, enrolled.id.clone())
        });
        if role == Role::Support {
            crate::keys::write_secret_file(&root.join(DEMO_TOKEN_FILE), enrolled.token.as_bytes())?;
        }
    }
    node.audit(secret, clock.clone(), &entries)?;
    crate::keys::write_secret_file(&root.join(DEMO_LOGINS_FILE), lines.join("\n").as_bytes())?;
    Ok(())
}

fn demo_setup(root: &Path, node_dir: &NodeDir, args: &DemoArgs, clock: &SharedClock) -> Result<()> {
    println!("デモを作ります: {}", root.display());
    fs::create_dir_all(root)?;
    let central_dir = CentralDir::new(root.join("central"));
    central::init(&central_dir, clock.as_ref())?;
    let csv = root.join("persons.csv");
    synth_command(&SynthArgs {
        municipalities: args.municipalities.clone(),
        persons: args.persons,
        seed: args.seed,
        out: csv.clone(),
        queries: Some(root.join("queries.jsonl")),
        query_count: 200,
        as_of: None,
        quiet: false,
    })?;
    let snap = root.join("region.kfsnap");
    snapshot_command(
        &SnapshotArgs {
            dir: central_dir.root.clone(),
            input: csv,
            out: snap.clone(),
            encoding: "auto".into(),
            skip_invalid: false,
            synthetic: true,
            quiet: false,
        },
        clock,
    )?;
    let region = Region::parse(&args.municipalities)?;
    let bundle = root.join("demo-node.bundle");
    central::enroll_node(&central_dir, DEMO_NODE, &region, &bundle, clock.as_ref())?;
    node::init(node_dir, &bundle, None)?;
    fs::remove_file(&bundle)?;
    let mut node = Node::open(node_dir)?;
    let secret = Arc::new(node.secret_key(None)?);
    import_snapshot(&mut node, &snap, secret, clock, false)?;
    demo_authorize(root, &mut node, args, clock)?;
    demo_staff(root, &mut node, clock)
}

const DEMO_NODE: &str = "demo-node";

/// A 72-hour drill authorization for the demo node, issued and imported.
fn demo_authorize(root: &Path, node: &mut Node, args: &DemoArgs, clock: &SharedClock) -> Result<()> {
    let code = authorize_command(
        &AuthorizeArgs {
            dir: root.join("central"),
            disaster: "訓練：奥能登地震（デモ）".into(),
            municipalities: args.municipalities.clone(),
            nodes: DEMO_NODE.into(),
            facilities: None,
            not_before: None,
            not_after: Some(clock.now() + chrono::Duration::hours(72)),
            days: None,
            drill: true,
            id: Some("demo-drill".into()),
            serial: None,
            snapshot: None,
            sections: None,
            out: root.join("demo.kfauth"),
            text: false,
            qr: Some(root.join("demo-auth.svg")),
        },
        clock,
    )?;
    let secret = Arc::new(node.secret_key(None)?);
    import_authorization(node, &code, secret, clock)?;
    Ok(())
}
