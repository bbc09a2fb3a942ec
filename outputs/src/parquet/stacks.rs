//! `stacks.parquet`: one row per frame of every stack, inlined calls expanded.

use super::table::{field, Constant, Table};
use crate::profile::SymbolizedStacks;
use arrow_array::builder::{BooleanBuilder, StringBuilder, UInt32Builder, UInt64Builder};
use arrow_array::ArrayRef;
use arrow_schema::{DataType, Field};
use std::sync::Arc;

/// `stacks.parquet`: one row per frame of every stack, inlined calls
/// expanded, leaf (depth 0) first.
pub struct StackRows<'a> {
    table: Table,
    constant: &'a Constant,
    stack: UInt32Builder,
    depth: UInt32Builder,
    address: UInt64Builder,
    function: StringBuilder,
    file: StringBuilder,
    line: UInt32Builder,
    inlined: BooleanBuilder,
}

impl<'a> StackRows<'a> {
    pub fn fields() -> Vec<Field> {
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

    pub fn new(table: Table, constant: &'a Constant) -> Self {
        Self {
            table,
            constant,
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
        if self.table.row_added() {
            self.flush()?;
        }
        Ok(())
    }

    /// Every stack of the trace, in id order.
    pub fn write_all(
        &mut self,
        ids: &[u32],
        stacks: &mut SymbolizedStacks<'_>,
    ) -> Result<(), String> {
        for &id in ids {
            let mut depth = 0u32;
            for &address in stacks.addresses(id).iter() {
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
        let rows = self.table.pending();
        if rows == 0 {
            return Ok(());
        }
        let columns: Vec<ArrayRef> = vec![
            self.constant.trace(rows),
            Arc::new(self.stack.finish()),
            Arc::new(self.depth.finish()),
            Arc::new(self.address.finish()),
            Arc::new(self.function.finish()),
            Arc::new(self.file.finish()),
            Arc::new(self.line.finish()),
            Arc::new(self.inlined.finish()),
        ];
        self.table.write(columns)
    }

    pub fn close(mut self) -> Result<String, String> {
        self.flush()?;
        self.table.close()
    }
}
