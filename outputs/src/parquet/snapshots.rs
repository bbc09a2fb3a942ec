//! `snapshots.parquet`: one row per stack that has allocated, per snapshot.

use super::table::{field, Constant, Table};
use arrow_array::builder::{StringBuilder, UInt32Builder, UInt64Builder};
use arrow_array::ArrayRef;
use arrow_schema::{DataType, Field};
use heapreplay_engine::clock::SeqClock;
use heapreplay_engine::heap::Heap;
use heapreplay_engine::snapshots::Trigger;
use std::sync::Arc;

/// `snapshots.parquet`: one row per stack that has allocated, per snapshot.
pub struct Snapshots<'a> {
    table: Table,
    constant: &'a Constant,
    clock: SeqClock<'a>,
    count: u32,
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
    pub fn fields() -> Vec<Field> {
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

    pub fn new(table: Table, constant: &'a Constant, clock: SeqClock<'a>) -> Self {
        Self {
            table,
            constant,
            clock,
            count: 0,
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

    pub fn take(&mut self, heap: &Heap, trigger: &Trigger, seq: u64) -> Result<(), String> {
        self.count += 1;
        let ns = trigger.ns().unwrap_or_else(|| self.clock.ns_at(seq));
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
            if self.table.row_added() {
                self.flush()?;
            }
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
            Arc::new(self.snapshot.finish()),
            Arc::new(self.reason.finish()),
            Arc::new(self.ns.finish()),
            Arc::new(self.stack.finish()),
            Arc::new(self.inuse_bytes.finish()),
            Arc::new(self.inuse_objects.finish()),
            Arc::new(self.alloc_bytes.finish()),
            Arc::new(self.alloc_objects.finish()),
        ];
        self.table.write(columns)
    }

    pub fn close(mut self) -> Result<String, String> {
        self.flush()?;
        self.table.close()
    }
}
