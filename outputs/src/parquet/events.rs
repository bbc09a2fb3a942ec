//! `events.parquet`: one row per allocation and free.

use super::table::{field, Constant, Table, BATCH};
use arrow_array::builder::{StringBuilder, UInt32Builder, UInt64Builder};
use arrow_array::ArrayRef;
use arrow_schema::{DataType, Field};
use heapreplay_engine::clock::SeqClock;
use heapreplay_engine::resolve::freed_stack;
use heapreplay_format::{Event, EventKind};
use std::sync::Arc;

/// `events.parquet`: one row per allocation and free.
pub struct Events<'a> {
    table: Table,
    constant: &'a Constant,
    clock: SeqClock<'a>,
    seq: UInt64Builder,
    ns: UInt64Builder,
    kind: StringBuilder,
    address: UInt64Builder,
    size: UInt64Builder,
    stack: UInt32Builder,
}

impl<'a> Events<'a> {
    pub fn fields() -> Vec<Field> {
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

    pub fn new(table: Table, constant: &'a Constant, clock: SeqClock<'a>) -> Self {
        Self {
            table,
            constant,
            clock,
            seq: UInt64Builder::with_capacity(BATCH),
            ns: UInt64Builder::with_capacity(BATCH),
            kind: StringBuilder::with_capacity(BATCH, BATCH * 5),
            address: UInt64Builder::with_capacity(BATCH),
            size: UInt64Builder::with_capacity(BATCH),
            stack: UInt32Builder::with_capacity(BATCH),
        }
    }

    pub fn push(&mut self, e: &Event) -> Result<(), String> {
        let (kind, stack) = match e.kind {
            EventKind::Alloc => ("alloc", Some(e.stack)),
            EventKind::Free => ("free", freed_stack(e)),
            EventKind::Retire => return Ok(()), // not a recorded event
        };
        self.seq.append_value(e.seq);
        self.ns.append_value(self.clock.ns_at(e.seq));
        self.address.append_value(e.addr);
        self.kind.append_value(kind);
        self.size.append_value(e.size);
        self.stack.append_option(stack);
        if self.table.row_added() {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), String> {
        let rows = self.table.pending();
        if rows == 0 {
            return Ok(());
        }
        let columns: Vec<ArrayRef> = vec![
            self.constant.trace(rows),
            self.constant.pid(rows),
            Arc::new(self.seq.finish()),
            Arc::new(self.ns.finish()),
            Arc::new(self.kind.finish()),
            Arc::new(self.address.finish()),
            Arc::new(self.size.finish()),
            Arc::new(self.stack.finish()),
        ];
        self.table.write(columns)
    }

    pub fn close(mut self) -> Result<String, String> {
        self.flush()?;
        self.table.close()
    }
}
