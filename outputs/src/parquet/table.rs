//! One Parquet file written a record batch at a time on a thread of its
//! own, and the columns every row of a trace shares.

use arrow_array::{ArrayRef, RecordBatch, StringArray, UInt32Array};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use heapreplay_engine::trace::io_text;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;
use std::fs::File;
use std::path::Path;
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Rows per record batch handed to the Parquet writer.
pub const BATCH: usize = 1 << 16;

/// One line for a Parquet writing error, with the io error's text when
/// there is one.
fn parquet_text(e: &ParquetError) -> String {
    match e {
        ParquetError::External(inner) => match inner.downcast_ref::<std::io::Error>() {
            Some(io) => io_text(io),
            None => inner.to_string(),
        },
        other => other.to_string(),
    }
    .replace('\n', " ")
}

pub fn field(name: &str, data_type: DataType, nullable: bool) -> Field {
    Field::new(name, data_type, nullable)
}

/// One Parquet file being written, a record batch at a time. Encoding and
/// compressing take several times as long as replaying, so each file is
/// written on its own thread, fed through a short queue (memory stays at
/// a few batches whatever the trace's length).
pub struct Table {
    shown: String,
    schema: SchemaRef,
    /// `Some(batch)` to write, `None` to finish the file; closed early
    /// (the file abandoned) when the table is dropped on an error.
    batches: Option<SyncSender<Option<RecordBatch>>>,
    writer: Option<JoinHandle<Result<(), String>>>,
    rows: u64,
    /// Rows added to the builders since the last batch was written.
    pending: usize,
}

impl Table {
    /// Creates `dir/name`. Columns in `plain` get no dictionary (they
    /// seldom repeat); those in `delta` are delta-encoded (they mostly
    /// grow).
    pub fn create(
        dir: &Path,
        name: &str,
        fields: Vec<Field>,
        plain: &[&str],
        delta: &[&str],
    ) -> Result<Self, String> {
        let path = dir.join(name);
        let shown = path.display().to_string();
        let file =
            File::create(&path).map_err(|e| format!("{shown}: cannot write: {}", io_text(&e)))?;
        let mut props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .set_created_by(format!("heapreplay {}", env!("CARGO_PKG_VERSION")));
        for &c in plain.iter().chain(delta) {
            props = props.set_column_dictionary_enabled(ColumnPath::from(c), false);
        }
        for &c in delta {
            props = props.set_column_encoding(ColumnPath::from(c), Encoding::DELTA_BINARY_PACKED);
        }
        let schema = Arc::new(Schema::new(fields));
        let failed = |e: ParquetError| format!("{shown}: cannot write: {}", parquet_text(&e));
        let mut writer =
            ArrowWriter::try_new(file, schema.clone(), Some(props.build())).map_err(failed)?;
        let (batches, queue) = sync_channel::<Option<RecordBatch>>(2);
        let thread_shown = shown.clone();
        let writer = std::thread::Builder::new()
            .name(format!("write {name}"))
            .spawn(move || {
                let failed =
                    |e: ParquetError| format!("{thread_shown}: cannot write: {}", parquet_text(&e));
                while let Ok(next) = queue.recv() {
                    match next {
                        Some(batch) => writer.write(&batch).map_err(failed)?,
                        None => return writer.close().map(|_| ()).map_err(failed),
                    }
                }
                Ok(())
            })
            .map_err(|e| format!("{shown}: cannot start a thread: {e}"))?;
        Ok(Self {
            shown,
            schema,
            batches: Some(batches),
            writer: Some(writer),
            rows: 0,
            pending: 0,
        })
    }

    /// Counts one row added to the caller's builders; true when they hold a
    /// whole batch, to be written.
    pub fn row_added(&mut self) -> bool {
        self.pending += 1;
        self.pending == BATCH
    }

    /// Rows in the caller's builders not written yet.
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// Appends one batch of rows (the pending ones), the columns in schema order.
    pub fn write(&mut self, columns: Vec<ArrayRef>) -> Result<(), String> {
        self.pending = 0;
        let batch = RecordBatch::try_new(self.schema.clone(), columns)
            .map_err(|e| format!("{}: cannot write: {e}", self.shown))?;
        self.rows += batch.num_rows() as u64;
        let sent = self.batches.as_ref().map(|b| b.send(Some(batch)));
        if let Some(Ok(())) = sent {
            return Ok(());
        }
        // The writing thread stopped: it says why.
        self.join()?;
        Err(format!("{}: cannot write", self.shown))
    }

    /// Waits for the writing thread; its error, if it had one.
    fn join(&mut self) -> Result<(), String> {
        self.batches = None;
        match self.writer.take().map(JoinHandle::join) {
            None | Some(Ok(Ok(()))) => Ok(()),
            Some(Ok(Err(message))) => Err(message),
            Some(Err(_)) => Err(format!("{}: the writing thread failed", self.shown)),
        }
    }

    /// Writes the rest and the footer; returns what to tell the user.
    pub fn close(mut self) -> Result<String, String> {
        if let Some(b) = &self.batches {
            // If the thread has stopped, join says why.
            let _ = b.send(None);
        }
        self.join()?;
        Ok(format!("{} ({} rows)", self.shown, self.rows))
    }
}

impl Drop for Table {
    /// Abandons the file (no footer) if it was not closed, and waits for
    /// the thread, so that none is left writing.
    fn drop(&mut self) {
        let _ = self.join();
    }
}

/// The columns every row of a trace shares (trace name, pid), made once
/// for a whole batch and sliced for shorter ones.
pub struct Constant {
    trace: ArrayRef,
    pid: ArrayRef,
}

impl Constant {
    pub fn new(trace: &str, pid: u32) -> Self {
        Self {
            trace: Arc::new(StringArray::from_iter_values(std::iter::repeat_n(
                trace, BATCH,
            ))),
            pid: Arc::new(UInt32Array::from_iter_values(std::iter::repeat_n(
                pid, BATCH,
            ))),
        }
    }

    pub fn trace(&self, rows: usize) -> ArrayRef {
        self.trace.slice(0, rows)
    }

    pub fn pid(&self, rows: usize) -> ArrayRef {
        self.pid.slice(0, rows)
    }
}
