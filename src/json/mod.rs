//! The JSON Lines records of every command's `--json` output (and of the HTTP API's results):
//! one typed record (`Serialize`) per record type, schema version [`SCHEMA_VERSION`], documented
//! in `docs/JSON.md`. Every record is one object with a `"type"`; every command ends with a
//! `"summary"` record that names the command and the schema version. A struct declares its
//! fields in the order the record writes its keys. The command line's printer writes each
//! record as one line (or, without `--json`, as the text `src/cli/reports.rs` gives it); the
//! HTTP API answers with the same records.
//!
//! Paths are carried losslessly: a path is its text (invalid UTF-8 replaced by U+FFFD), and
//! when it is not valid UTF-8 a sibling `<key>_bytes` holds its raw bytes in standard base64,
//! as ripgrep does.
//!
//! One file per family of records, every record re-exported here (`json::IndexRecord`):
//! - `fields`: the pieces records share: the summary head, paths, folders, the store's place,
//!   settings as typed, the schema version;
//! - `index`: `index` (and what `--repair` dropped), `forget`, `verify`;
//! - `search`: `query` and its hits, `grid` rows, `dups` groups, `--ignore`, `--undo`;
//! - `training`: `train` and its nested records, `eval`;
//! - `service`: `serve`, `worker`, `store-init`;
//! - `diagnostics`: `skip`, `warning`, `error`.

mod diagnostics;
mod fields;
mod index;
mod search;
mod service;
mod training;

pub use crate::json_path::put_path;
pub use diagnostics::{ErrorRecord, SkipRecord, WarningRecord};
pub use fields::{setting, FolderRecord, PathField, PathOrNull, Place, SCHEMA_VERSION};
pub use index::{DroppedRecord, ForgetRecord, IndexRecord, RepairRecord, VerifyRecord};
pub use search::{
    DuplicateRecord, DupsRecord, GridRecord, GroupRecord, HitRecord, IgnoreRecord, QueryRecord,
    QuerySummaryRecord, RowRecord, SimilarMemberRecord, SimilarRecord, UndoRecord,
};
pub use service::{ServeRecord, StoreInitRecord, WorkerRecord};
pub use training::{
    ClassRecord, EvalRecord, LoadRecord, LossesRecord, ProbeRecord, ProbeScoreRecord,
    ProjectionRecord, RetrievalRecord, TrainEvalRecord, TrainRecord,
};
