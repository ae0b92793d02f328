//! Checks CQL statements against the tables the migrations create, with no Cassandra
//! running: the table exists, every column named exists, an INSERT names the whole primary
//! key, an UPDATE or DELETE pins it, and a WHERE restricts the whole partition key with `=`
//! and then a prefix of the clustering key in order, a range only on the last one (what
//! Cassandra accepts without ALLOW FILTERING). It understands the subset of CQL this crate
//! writes, and refuses what it does not understand.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str,
    Num,
    Sym(String),
}

fn tokenize(cql: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let chars: Vec<char> = cql.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '-' && chars.get(i + 1) == Some(&'-') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '\'' {
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err("unterminated string".into()),
                    Some('\'') if chars.get(i + 1) == Some(&'\'') => i += 2,
                    Some('\'') => break,
                    Some(_) => i += 1,
                }
            }
            i += 1;
            out.push(Tok::Str);
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(Tok::Word(
                chars[start..i].iter().collect::<String>().to_lowercase(),
            ));
        } else if c.is_ascii_digit() {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
            out.push(Tok::Num);
        } else if (c == '<' || c == '>') && chars.get(i + 1) == Some(&'=') {
            out.push(Tok::Sym(format!("{c}=")));
            i += 2;
        } else if "(),;=<>*?.{}:$".contains(c) {
            out.push(Tok::Sym(c.to_string()));
            i += 1;
        } else {
            return Err(format!("unexpected character `{c}`"));
        }
    }
    Ok(out)
}

/// A table as its CREATE TABLE statement defines it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Table {
    pub columns: Vec<(String, String)>,
    pub partition_key: Vec<String>,
    pub clustering_key: Vec<String>,
}

impl Table {
    fn has(&self, col: &str) -> bool {
        self.columns.iter().any(|(c, _)| c == col)
    }
    fn is_key(&self, col: &str) -> bool {
        self.partition_key.iter().any(|c| c == col) || self.clustering_key.iter().any(|c| c == col)
    }
}

/// Tables by name, from the CREATE TABLE statements of a schema.
#[derive(Debug, Default)]
pub struct Schema {
    pub tables: BTreeMap<String, Table>,
}

struct Cursor {
    toks: Vec<Tok>,
    at: usize,
}

impl Cursor {
    fn new(cql: &str) -> Result<Self, String> {
        Ok(Self {
            toks: tokenize(cql)?,
            at: 0,
        })
    }
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.at)
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.at).cloned();
        self.at += 1;
        t
    }
    fn is_word(&self, w: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(x)) if x == w)
    }
    fn is_sym(&self, s: &str) -> bool {
        matches!(self.peek(), Some(Tok::Sym(x)) if x == s)
    }
    fn word(&mut self, w: &str) -> Result<(), String> {
        match self.next() {
            Some(Tok::Word(x)) if x == w => Ok(()),
            other => Err(format!("expected `{w}`, found {other:?}")),
        }
    }
    fn sym(&mut self, s: &str) -> Result<(), String> {
        match self.next() {
            Some(Tok::Sym(x)) if x == s => Ok(()),
            other => Err(format!("expected `{s}`, found {other:?}")),
        }
    }
    fn ident(&mut self) -> Result<String, String> {
        match self.next() {
            Some(Tok::Word(x)) => Ok(x),
            other => Err(format!("expected a name, found {other:?}")),
        }
    }
    fn skip_word(&mut self, w: &str) -> bool {
        if self.is_word(w) {
            self.at += 1;
            true
        } else {
            false
        }
    }
    fn done(&self) -> bool {
        self.at >= self.toks.len() || (self.is_sym(";") && self.at + 1 == self.toks.len())
    }
    /// A parenthesised, comma-separated list of names.
    fn name_list(&mut self) -> Result<Vec<String>, String> {
        self.sym("(")?;
        let mut names = vec![self.ident()?];
        while self.is_sym(",") {
            self.at += 1;
            names.push(self.ident()?);
        }
        self.sym(")")?;
        Ok(names)
    }
}

impl Schema {
    /// Reads the CREATE TABLE and ALTER TABLE … ADD statements of `statements`; other
    /// statements (keyspaces, comments) are passed over.
    pub fn add(&mut self, statements: &[String]) -> Result<(), String> {
        for st in statements {
            let mut c = Cursor::new(st)?;
            if c.skip_word("alter") {
                self.alter(&mut c)?;
                continue;
            }
            if !(c.skip_word("create") && c.skip_word("table")) {
                continue;
            }
            if c.skip_word("if") {
                c.word("not")?;
                c.word("exists")?;
            }
            let name = c.ident()?;
            let table = parse_table_body(&mut c).map_err(|e| format!("table {name}: {e}"))?;
            self.tables.insert(name, table);
        }
        Ok(())
    }

    /// `ALTER TABLE [IF EXISTS] t ADD [IF NOT EXISTS] column type`: the column joins `t`.
    fn alter(&mut self, c: &mut Cursor) -> Result<(), String> {
        c.word("table")?;
        if c.skip_word("if") {
            c.word("exists")?;
        }
        let name = c.ident()?;
        c.word("add")?;
        if c.skip_word("if") {
            c.word("not")?;
            c.word("exists")?;
        }
        let (column, ty) = (c.ident()?, c.ident()?);
        if !c.done() {
            return Err(format!(
                "ALTER TABLE {name}: only one plain column per ADD is understood"
            ));
        }
        let table = self
            .tables
            .get_mut(&name)
            .ok_or_else(|| format!("ALTER TABLE {name}: no such table before it"))?;
        if !table.has(&column) {
            table.columns.push((column, ty));
        }
        Ok(())
    }

    /// Checks one DML statement; the error names what is wrong.
    pub fn check(&self, cql: &str) -> Result<(), String> {
        let mut c = Cursor::new(cql)?;
        match c.next() {
            Some(Tok::Word(w)) if w == "select" => self.check_select(&mut c),
            Some(Tok::Word(w)) if w == "insert" => self.check_insert(&mut c),
            Some(Tok::Word(w)) if w == "delete" => self.check_delete(&mut c),
            Some(Tok::Word(w)) if w == "update" => self.check_update(&mut c),
            other => Err(format!("unsupported statement start {other:?}")),
        }
    }

    fn table(&self, name: &str) -> Result<&Table, String> {
        self.tables
            .get(name)
            .ok_or_else(|| format!("no table `{name}` in the migrations"))
    }

    fn check_select(&self, c: &mut Cursor) -> Result<(), String> {
        let mut cols = Vec::new();
        loop {
            let name = c.ident()?;
            if c.is_sym("(") {
                // An aggregate: count(x), max(x).
                c.at += 1;
                if c.is_sym("*") {
                    c.at += 1;
                } else {
                    cols.push(c.ident()?);
                }
                c.sym(")")?;
            } else {
                cols.push(name);
            }
            if c.is_sym(",") {
                c.at += 1;
            } else {
                break;
            }
        }
        c.word("from")?;
        let table = self.table(&c.ident()?)?;
        for col in &cols {
            if !table.has(col) {
                return Err(format!("no column `{col}`"));
            }
        }
        if c.skip_word("where") {
            check_where(table, c, false)?;
        }
        if c.skip_word("limit") {
            value(c)?;
        }
        if !c.done() {
            return Err(format!("unexpected {:?}", c.peek()));
        }
        Ok(())
    }

    fn check_insert(&self, c: &mut Cursor) -> Result<(), String> {
        c.word("into")?;
        let table = self.table(&c.ident()?)?;
        let cols = c.name_list()?;
        c.word("values")?;
        c.sym("(")?;
        let mut values = 1;
        value(c)?;
        while c.is_sym(",") {
            c.at += 1;
            value(c)?;
            values += 1;
        }
        c.sym(")")?;
        if values != cols.len() {
            return Err(format!("{} columns but {values} values", cols.len()));
        }
        for col in &cols {
            if !table.has(col) {
                return Err(format!("no column `{col}`"));
            }
        }
        for key in table.partition_key.iter().chain(&table.clustering_key) {
            if !cols.contains(key) {
                return Err(format!("key column `{key}` is not set"));
            }
        }
        if c.skip_word("if") {
            c.word("not")?;
            c.word("exists")?;
        }
        if c.skip_word("using") {
            using(c)?;
        }
        if !c.done() {
            return Err(format!("unexpected {:?}", c.peek()));
        }
        Ok(())
    }

    fn check_delete(&self, c: &mut Cursor) -> Result<(), String> {
        c.word("from")?;
        let table = self.table(&c.ident()?)?;
        c.word("where")?;
        check_where(table, c, true)?;
        check_conditions(table, c)
    }

    fn check_update(&self, c: &mut Cursor) -> Result<(), String> {
        let table = self.table(&c.ident()?)?;
        if c.skip_word("using") {
            using(c)?;
        }
        c.word("set")?;
        loop {
            let col = c.ident()?;
            if !table.has(&col) || table.is_key(&col) {
                return Err(format!("SET of `{col}`, which is not a regular column"));
            }
            c.sym("=")?;
            value(c)?;
            if !c.is_sym(",") {
                break;
            }
            c.at += 1;
        }
        c.word("where")?;
        check_where(table, c, true)?;
        check_conditions(table, c)
    }
}

/// An optional `IF col = v AND ...` on regular columns, then the end of the statement.
fn check_conditions(table: &Table, c: &mut Cursor) -> Result<(), String> {
    if c.skip_word("if") {
        loop {
            let col = c.ident()?;
            if !table.has(&col) || table.is_key(&col) {
                return Err(format!(
                    "condition on `{col}`, which is not a regular column"
                ));
            }
            c.sym("=")?;
            value(c)?;
            if !c.skip_word("and") {
                break;
            }
        }
    }
    if !c.done() {
        return Err(format!("unexpected {:?}", c.peek()));
    }
    Ok(())
}

/// `TTL v` and/or `TIMESTAMP v`, joined by `AND`.
fn using(c: &mut Cursor) -> Result<(), String> {
    loop {
        match c.next() {
            Some(Tok::Word(w)) if w == "ttl" || w == "timestamp" => value(c)?,
            other => return Err(format!("expected TTL or TIMESTAMP, found {other:?}")),
        }
        if !c.skip_word("and") {
            return Ok(());
        }
    }
}

fn value(c: &mut Cursor) -> Result<(), String> {
    match c.next() {
        Some(Tok::Sym(s)) if s == "?" => Ok(()),
        Some(Tok::Str | Tok::Num) => Ok(()),
        other => Err(format!("expected a value, found {other:?}")),
    }
}

/// `WHERE` restrictions up to the next clause. `whole_partition_only`: a DELETE may restrict
/// only the partition key and a clustering prefix with `=`.
fn check_where(table: &Table, c: &mut Cursor, whole_partition_only: bool) -> Result<(), String> {
    let mut eq: Vec<String> = Vec::new();
    let mut ranged: Vec<String> = Vec::new();
    loop {
        let col = c.ident()?;
        if !table.has(&col) {
            return Err(format!("no column `{col}`"));
        }
        let op = match c.next() {
            Some(Tok::Sym(s)) if ["=", "<", ">", "<=", ">="].contains(&s.as_str()) => s,
            Some(Tok::Word(w)) if w == "in" => "=".to_owned(),
            other => return Err(format!("unsupported operator {other:?} on `{col}`")),
        };
        value(c)?;
        if op == "=" {
            if eq.contains(&col) {
                return Err(format!("`{col}` restricted twice"));
            }
            eq.push(col);
        } else if !ranged.contains(&col) {
            ranged.push(col);
        }
        if !c.skip_word("and") {
            break;
        }
    }
    for key in &table.partition_key {
        if !eq.contains(key) {
            return Err(format!(
                "partition key column `{key}` is not restricted with `=`"
            ));
        }
    }
    if whole_partition_only && !ranged.is_empty() {
        return Err("a DELETE cannot restrict a range".into());
    }
    if ranged.len() > 1 {
        return Err(format!("ranges on more than one column: {ranged:?}"));
    }
    // Clustering columns: an `=` prefix in key order, then at most one range, then nothing.
    let mut seen_gap = false;
    for key in &table.clustering_key {
        let is_eq = eq.contains(key);
        let is_range = ranged.contains(key);
        if (is_eq || is_range) && seen_gap {
            return Err(format!(
                "clustering column `{key}` is restricted but an earlier one is not (key order {:?})",
                table.clustering_key
            ));
        }
        if is_range || !is_eq {
            seen_gap = true;
        }
    }
    for col in eq.iter().chain(&ranged) {
        if !table.is_key(col) {
            return Err(format!(
                "`{col}` is not a key column: this would need ALLOW FILTERING"
            ));
        }
    }
    Ok(())
}

fn parse_table_body(c: &mut Cursor) -> Result<Table, String> {
    let mut t = Table::default();
    c.sym("(")?;
    loop {
        if c.skip_word("primary") {
            c.word("key")?;
            c.sym("(")?;
            if c.is_sym("(") {
                t.partition_key = c.name_list()?;
            } else {
                t.partition_key = vec![c.ident()?];
            }
            while c.is_sym(",") {
                c.at += 1;
                t.clustering_key.push(c.ident()?);
            }
            c.sym(")")?;
        } else {
            let name = c.ident()?;
            let ty = c.ident()?;
            if c.skip_word("primary") {
                c.word("key")?;
                t.partition_key = vec![name.clone()];
            }
            t.columns.push((name, ty));
        }
        if c.is_sym(",") {
            c.at += 1;
            continue;
        }
        c.sym(")")?;
        break;
    }
    if t.partition_key.is_empty() {
        return Err("no primary key".into());
    }
    for key in t.partition_key.iter().chain(&t.clustering_key) {
        if !t.has(key) {
            return Err(format!("key column `{key}` is not declared"));
        }
    }
    if c.skip_word("with") {
        check_options(&mut t, c)?;
    }
    Ok(t)
}

/// `WITH` options: a declared CLUSTERING ORDER must list the clustering key in order.
fn check_options(t: &mut Table, c: &mut Cursor) -> Result<(), String> {
    while !c.done() {
        if c.skip_word("clustering") {
            c.word("order")?;
            c.word("by")?;
            c.sym("(")?;
            let mut order = Vec::new();
            loop {
                order.push(c.ident()?);
                if !(c.skip_word("asc") || c.skip_word("desc")) {
                    return Err("CLUSTERING ORDER needs ASC or DESC".into());
                }
                if c.is_sym(",") {
                    c.at += 1;
                } else {
                    break;
                }
            }
            c.sym(")")?;
            if order != t.clustering_key {
                return Err(format!(
                    "CLUSTERING ORDER {order:?} is not the clustering key {:?}",
                    t.clustering_key
                ));
            }
        } else {
            c.next();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
