//! `heapreplay export --parquet`: a trace's events, stacks and snapshots as
//! Parquet files (`events.parquet`, `stacks.parquet`, `snapshots.parquet` in
//! one folder), so that many traces can be queried together in DuckDB,
//! DataFusion or Spark. Every table has a `trace` column (the trace's file
//! name) to tell traces apart once unioned.

use crate::cli::ExportArgs;
use std::process::ExitCode;

/// Writes the trace's events, stacks and snapshots (at the chosen rules; by
/// default one at the end) as Parquet files into the output folder.
pub fn run(args: &ExportArgs) -> Result<ExitCode, String> {
    #[cfg(feature = "parquet")]
    {
        parquet_files::run(args)
    }
    #[cfg(not(feature = "parquet"))]
    {
        let _ = args;
        Err("this heapreplay was built without Parquet support (cargo feature `parquet`)".into())
    }
}

#[cfg(feature = "parquet")]
mod parquet_files {
    use crate::cli::ExportArgs;
    use crate::pass;
    use arrow_array::builder::{BooleanBuilder, StringBuilder, UInt32Builder, UInt64Builder};
    use arrow_array::{ArrayRef, RecordBatch, StringArray, UInt32Array};
    use arrow_schema::{DataType, Field, Schema, SchemaRef};
    use heapreplay_analysis::clock::SeqClock;
    use heapreplay_analysis::profile::Stacks;
    use heapreplay_analysis::replay::Heap;
    use heapreplay_analysis::snapshots::Trigger;
    use heapreplay_analysis::trace::io_text;
    use heapreplay_format::hash::AddrHash;
    use heapreplay_format::{Event, EventKind};
    use parquet::arrow::ArrowWriter;
    use parquet::basic::{Compression, Encoding, ZstdLevel};
    use parquet::errors::ParquetError;
    use parquet::file::properties::WriterProperties;
    use parquet::schema::types::ColumnPath;
    use std::collections::HashMap;
    use std::fs::File;
    use std::path::{Path, PathBuf};
    use std::process::ExitCode;
    use std::sync::mpsc::{sync_channel, SyncSender};
    use std::sync::Arc;
    use std::thread::JoinHandle;

    /// Rows per record batch handed to the Parquet writer.
    const BATCH: usize = 1 << 16;

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

    fn field(name: &str, data_type: DataType, nullable: bool) -> Field {
        Field::new(name, data_type, nullable)
    }

    /// One Parquet file being written, a record batch at a time. Encoding and
    /// compressing take several times as long as replaying, so each file is
    /// written on its own thread, fed through a short queue (memory stays at
    /// a few batches whatever the trace's length).
    struct Table {
        shown: String,
        schema: SchemaRef,
        /// `Some(batch)` to write, `None` to finish the file; closed early
        /// (the file abandoned) when the table is dropped on an error.
        batches: Option<SyncSender<Option<RecordBatch>>>,
        writer: Option<JoinHandle<Result<(), String>>>,
        rows: u64,
    }

    impl Table {
        /// Creates `dir/name`. Columns in `plain` get no dictionary (they
        /// seldom repeat); those in `delta` are delta-encoded (they mostly
        /// grow).
        fn create(
            dir: &Path,
            name: &str,
            fields: Vec<Field>,
            plain: &[&str],
            delta: &[&str],
        ) -> Result<Self, String> {
            let path = dir.join(name);
            let shown = path.display().to_string();
            let file = File::create(&path)
                .map_err(|e| format!("{shown}: cannot write: {}", io_text(&e)))?;
            let mut props = WriterProperties::builder()
                .set_compression(Compression::ZSTD(ZstdLevel::default()))
                .set_created_by(format!("heapreplay {}", env!("CARGO_PKG_VERSION")));
            for &c in plain.iter().chain(delta) {
                props = props.set_column_dictionary_enabled(ColumnPath::from(c), false);
            }
            for &c in delta {
                props =
                    props.set_column_encoding(ColumnPath::from(c), Encoding::DELTA_BINARY_PACKED);
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
                    let failed = |e: ParquetError| {
                        format!("{thread_shown}: cannot write: {}", parquet_text(&e))
                    };
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
            })
        }

        /// Appends one batch of rows, the columns in schema order.
        fn write(&mut self, columns: Vec<ArrayRef>) -> Result<(), String> {
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
        fn close(mut self) -> Result<String, String> {
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
    struct Constant {
        trace: ArrayRef,
        pid: ArrayRef,
    }

    impl Constant {
        fn new(trace: &str, pid: u32) -> Self {
            Self {
                trace: Arc::new(StringArray::from_iter_values(std::iter::repeat_n(
                    trace, BATCH,
                ))),
                pid: Arc::new(UInt32Array::from_iter_values(std::iter::repeat_n(
                    pid, BATCH,
                ))),
            }
        }

        fn trace(&self, rows: usize) -> ArrayRef {
            self.trace.slice(0, rows)
        }

        fn pid(&self, rows: usize) -> ArrayRef {
            self.pid.slice(0, rows)
        }
    }

    /// `events.parquet`: one row per allocation and free.
    struct Events<'a> {
        table: Table,
        constant: &'a Constant,
        clock: SeqClock<'a>,
        /// Live blocks: address to size and allocating stack, as the
        /// replayed heap keeps them, to give frees their size and stack.
        live: HashMap<u64, (u64, u32), AddrHash>,
        len: usize,
        seq: UInt64Builder,
        ns: UInt64Builder,
        kind: StringBuilder,
        address: UInt64Builder,
        size: UInt64Builder,
        stack: UInt32Builder,
    }

    impl<'a> Events<'a> {
        fn fields() -> Vec<Field> {
            vec![
                field("trace", DataType::Utf8, false),
                field("pid", DataType::UInt32, false),
                field("seq", DataType::UInt64, false),
                field("ns", DataType::UInt64, false),
                field("kind", DataType::Utf8, false),
                field("address", DataType::UInt64, false),
                field("size", DataType::UInt64, false),
                field("stack", DataType::UInt32, true),
            ]
        }

        fn new(table: Table, constant: &'a Constant, clock: SeqClock<'a>) -> Self {
            Self {
                table,
                constant,
                clock,
                live: HashMap::with_hasher(AddrHash),
                len: 0,
                seq: UInt64Builder::with_capacity(BATCH),
                ns: UInt64Builder::with_capacity(BATCH),
                kind: StringBuilder::with_capacity(BATCH, BATCH * 5),
                address: UInt64Builder::with_capacity(BATCH),
                size: UInt64Builder::with_capacity(BATCH),
                stack: UInt32Builder::with_capacity(BATCH),
            }
        }

        fn push(&mut self, e: &Event) -> Result<(), String> {
            self.seq.append_value(e.seq);
            self.ns.append_value(self.clock.ns_at(e.seq));
            self.address.append_value(e.addr);
            match e.kind {
                EventKind::Alloc => {
                    self.live.insert(e.addr, (e.size, e.stack));
                    self.kind.append_value("alloc");
                    self.size.append_value(e.size);
                    self.stack.append_value(e.stack);
                }
                EventKind::Free => {
                    let block = self.live.remove(&e.addr);
                    self.kind.append_value("free");
                    self.size.append_value(block.map_or(0, |(size, _)| size));
                    self.stack.append_option(block.map(|(_, stack)| stack));
                }
            }
            self.len += 1;
            if self.len == BATCH {
                self.flush()?;
            }
            Ok(())
        }

        fn flush(&mut self) -> Result<(), String> {
            if self.len == 0 {
                return Ok(());
            }
            let columns: Vec<ArrayRef> = vec![
                self.constant.trace(self.len),
                self.constant.pid(self.len),
                Arc::new(self.seq.finish()),
                Arc::new(self.ns.finish()),
                Arc::new(self.kind.finish()),
                Arc::new(self.address.finish()),
                Arc::new(self.size.finish()),
                Arc::new(self.stack.finish()),
            ];
            self.len = 0;
            self.table.write(columns)
        }

        fn close(mut self) -> Result<String, String> {
            self.flush()?;
            self.table.close()
        }
    }

    /// `snapshots.parquet`: one row per stack that has allocated, per snapshot.
    struct Snapshots<'a> {
        table: Table,
        constant: &'a Constant,
        clock: SeqClock<'a>,
        count: u32,
        len: usize,
        snapshot: UInt32Builder,
        reason: StringBuilder,
        ns: UInt64Builder,
        stack: UInt32Builder,
        inuse_bytes: UInt64Builder,
        inuse_objects: UInt64Builder,
        alloc_bytes: UInt64Builder,
        alloc_objects: UInt64Builder,
    }

    impl<'a> Snapshots<'a> {
        fn fields() -> Vec<Field> {
            vec![
                field("trace", DataType::Utf8, false),
                field("snapshot", DataType::UInt32, false),
                field("reason", DataType::Utf8, false),
                field("ns", DataType::UInt64, false),
                field("stack", DataType::UInt32, false),
                field("inuse_bytes", DataType::UInt64, false),
                field("inuse_objects", DataType::UInt64, false),
                field("alloc_bytes", DataType::UInt64, false),
                field("alloc_objects", DataType::UInt64, false),
            ]
        }

        fn new(table: Table, constant: &'a Constant, clock: SeqClock<'a>) -> Self {
            Self {
                table,
                constant,
                clock,
                count: 0,
                len: 0,
                snapshot: UInt32Builder::new(),
                reason: StringBuilder::new(),
                ns: UInt64Builder::new(),
                stack: UInt32Builder::new(),
                inuse_bytes: UInt64Builder::new(),
                inuse_objects: UInt64Builder::new(),
                alloc_bytes: UInt64Builder::new(),
                alloc_objects: UInt64Builder::new(),
            }
        }

        fn take(&mut self, heap: &Heap, trigger: &Trigger, seq: u64) -> Result<(), String> {
            self.count += 1;
            let ns = match trigger {
                Trigger::At { ns } | Trigger::Marker { ns, .. } | Trigger::Peak { ns, .. } => *ns,
                _ => self.clock.ns_at(seq),
            };
            let reason = trigger.reason();
            for (stack, c) in heap.stacks() {
                self.snapshot.append_value(self.count);
                self.reason.append_value(&reason);
                self.ns.append_value(ns);
                self.stack.append_value(stack);
                self.inuse_bytes.append_value(c.inuse_bytes());
                self.inuse_objects.append_value(c.inuse_objects());
                self.alloc_bytes.append_value(c.alloc_bytes);
                self.alloc_objects.append_value(c.allocs);
                self.len += 1;
                if self.len == BATCH {
                    self.flush()?;
                }
            }
            Ok(())
        }

        fn flush(&mut self) -> Result<(), String> {
            if self.len == 0 {
                return Ok(());
            }
            let columns: Vec<ArrayRef> = vec![
                self.constant.trace(self.len),
                Arc::new(self.snapshot.finish()),
                Arc::new(self.reason.finish()),
                Arc::new(self.ns.finish()),
                Arc::new(self.stack.finish()),
                Arc::new(self.inuse_bytes.finish()),
                Arc::new(self.inuse_objects.finish()),
                Arc::new(self.alloc_bytes.finish()),
                Arc::new(self.alloc_objects.finish()),
            ];
            self.len = 0;
            self.table.write(columns)
        }

        fn close(mut self) -> Result<String, String> {
            self.flush()?;
            self.table.close()
        }
    }

    /// `stacks.parquet`: one row per frame of every stack, inlined calls
    /// expanded, leaf (depth 0) first.
    struct StackRows<'a> {
        table: Table,
        constant: &'a Constant,
        len: usize,
        stack: UInt32Builder,
        depth: UInt32Builder,
        address: UInt64Builder,
        function: StringBuilder,
        file: StringBuilder,
        line: UInt32Builder,
        inlined: BooleanBuilder,
    }

    impl<'a> StackRows<'a> {
        fn fields() -> Vec<Field> {
            vec![
                field("trace", DataType::Utf8, false),
                field("stack", DataType::UInt32, false),
                field("depth", DataType::UInt32, false),
                field("address", DataType::UInt64, false),
                field("function", DataType::Utf8, false),
                field("file", DataType::Utf8, true),
                field("line", DataType::UInt32, true),
                field("inlined", DataType::Boolean, false),
            ]
        }

        fn new(table: Table, constant: &'a Constant) -> Self {
            Self {
                table,
                constant,
                len: 0,
                stack: UInt32Builder::new(),
                depth: UInt32Builder::new(),
                address: UInt64Builder::new(),
                function: StringBuilder::new(),
                file: StringBuilder::new(),
                line: UInt32Builder::new(),
                inlined: BooleanBuilder::new(),
            }
        }

        #[allow(clippy::too_many_arguments)]
        fn push(
            &mut self,
            stack: u32,
            depth: u32,
            address: u64,
            function: &str,
            file: Option<&str>,
            line: Option<u32>,
            inlined: bool,
        ) -> Result<(), String> {
            self.stack.append_value(stack);
            self.depth.append_value(depth);
            self.address.append_value(address);
            self.function.append_value(function);
            self.file.append_option(file);
            self.line.append_option(line);
            self.inlined.append_value(inlined);
            self.len += 1;
            if self.len == BATCH {
                self.flush()?;
            }
            Ok(())
        }

        /// Every stack of the trace, in id order.
        fn write_all(&mut self, ids: &[u32], stacks: &mut Stacks<'_>) -> Result<(), String> {
            for &id in ids {
                let mut depth = 0u32;
                for &address in stacks.addresses(id) {
                    let location = stacks.location(address).clone();
                    if location.lines.is_empty() {
                        let label = location.unknown_label(stacks.mappings());
                        self.push(id, depth, address, &label, None, None, false)?;
                        depth += 1;
                    }
                    let last = location.lines.len().saturating_sub(1);
                    for (i, line) in location.lines.iter().enumerate() {
                        self.push(
                            id,
                            depth,
                            address,
                            &line.function,
                            line.file.as_deref(),
                            (line.line > 0).then_some(line.line),
                            i < last,
                        )?;
                        depth += 1;
                    }
                }
            }
            Ok(())
        }

        fn flush(&mut self) -> Result<(), String> {
            if self.len == 0 {
                return Ok(());
            }
            let columns: Vec<ArrayRef> = vec![
                self.constant.trace(self.len),
                Arc::new(self.stack.finish()),
                Arc::new(self.depth.finish()),
                Arc::new(self.address.finish()),
                Arc::new(self.function.finish()),
                Arc::new(self.file.finish()),
                Arc::new(self.line.finish()),
                Arc::new(self.inlined.finish()),
            ];
            self.len = 0;
            self.table.write(columns)
        }

        fn close(mut self) -> Result<String, String> {
            self.flush()?;
            self.table.close()
        }
    }

    /// The default folder: the trace path without `.zst`, plus `.parquet`.
    fn default_dir(trace: &Path) -> PathBuf {
        let mut s = crate::replay::default_prefix(trace).into_os_string();
        s.push(".parquet");
        PathBuf::from(s)
    }

    const FILES: [&str; 3] = ["events.parquet", "stacks.parquet", "snapshots.parquet"];

    /// Writes the three files into the output folder.
    pub fn run(args: &ExportArgs) -> Result<ExitCode, String> {
        let dir = args
            .output
            .clone()
            .unwrap_or_else(|| default_dir(&args.trace));
        let (trace, pipeline) = pass::open(&args.trace, &args.common)?;
        if dir.exists() && !dir.is_dir() {
            return Err(format!("{}: not a folder", dir.display()));
        }
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("{}: cannot create: {}", dir.display(), io_text(&e)))?;
        let result = write(args, &trace, pipeline, &dir);
        if result.is_err() {
            // A file without its footer is no Parquet file: leave none
            // behind to break a query over a whole fleet's folders.
            for name in FILES {
                let _ = std::fs::remove_file(dir.join(name));
            }
        }
        result
    }

    fn write(
        args: &ExportArgs,
        trace: &heapreplay_analysis::Trace,
        pipeline: bool,
        dir: &Path,
    ) -> Result<ExitCode, String> {
        let quiet = args.common.quiet;
        let name = args.trace.file_name().unwrap_or(args.trace.as_os_str());
        let constant = Constant::new(&name.to_string_lossy(), trace.info.pid);
        let [events_file, stacks_file, snapshots_file] = FILES;
        let mut events = Events::new(
            Table::create(
                dir,
                events_file,
                Events::fields(),
                &["address"],
                &["seq", "ns"],
            )?,
            &constant,
            SeqClock::new(&trace.clock),
        );
        let stack_table = Table::create(dir, stacks_file, StackRows::fields(), &["address"], &[])?;
        let mut snapshots = Snapshots::new(
            Table::create(dir, snapshots_file, Snapshots::fields(), &[], &[])?,
            &constant,
            SeqClock::new(&trace.clock),
        );

        // The pass cannot be stopped from `each`: a failed events file is
        // reported at the next snapshot, or after the pass.
        let failed = std::cell::RefCell::new(None::<String>);
        let plan = pass::plan(&args.rules);
        let result = pass::run(
            trace,
            &plan,
            pipeline,
            quiet,
            |heap, trigger, seq, _| {
                if let Some(message) = failed.borrow().clone() {
                    return Err(message);
                }
                snapshots.take(heap, trigger, seq)
            },
            |_, e| {
                if failed.borrow().is_none() {
                    if let Err(message) = events.push(e) {
                        *failed.borrow_mut() = Some(message);
                    }
                }
            },
        );
        if let Some(message) = failed.into_inner() {
            return Err(message);
        }
        let (outcome, code) = result?;

        let mut ids: Vec<u32> = trace.stacks.keys().copied().collect();
        ids.sort_unstable();
        let mut stacks = pass::stacks(trace, &args.common);
        let mut stack_rows = StackRows::new(stack_table, &constant);
        stack_rows.write_all(&ids, &mut stacks)?;

        let wrote = [events.close()?, stack_rows.close()?, snapshots.close()?];
        if !quiet {
            if outcome.snapshots == 0 {
                eprintln!(
                    "heapreplay: {}: no snapshot point matched; snapshots.parquet is empty",
                    args.trace.display()
                );
            }
            eprintln!("heapreplay: wrote {}", wrote.join(", "));
        }
        Ok(code)
    }
}
