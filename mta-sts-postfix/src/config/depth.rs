//! How deeply a YAML text nests, found in one pass over its bytes before it is parsed.
//!
//! The YAML parser under yaml_serde (libyaml-rs, a translation of libyaml) takes time quadratic
//! in the depth of flow collections: each token looks at the simple-key candidate of every open
//! flow level, and 30,000 nested `{a: ` (150 KB) take seconds. A configuration never nests more
//! than a few levels, so [`check`] refuses a text whose nesting passes a limit before the parser
//! sees it, in time linear in the text.
//!
//! The scan follows libyaml's scanner (`yaml_parser_fetch_next_token` and the scalar scanners):
//! where tokens start and end, the flow level, and the block indentation stack (with the
//! simple-key candidate of the block level, whose column opens a block mapping). It counts every
//! collection the parser would open: flow collections, block collections, and a block sequence
//! at its mapping key's indentation. Past a point where libyaml stops with an error nothing
//! matters (the parser never gets there), so errors are not reported; the scan goes on with its
//! best guess.

/// Fails with the line (1-based) where the nesting goes past `limit`.
pub(super) fn check(text: &str, limit: usize) -> Result<(), usize> {
    let mut s = Scanner::new(text.as_bytes(), limit);
    match s.run() {
        Ok(()) => Ok(()),
        Err(TooDeep) => Err(s.line + 1),
    }
}

/// The deepest nesting of `text`, as [`check`] counts it (a fuzz target compares it with the
/// parsed value's depth).
#[cfg(any(test, fuzzing))]
pub(super) fn max_depth(text: &str) -> usize {
    let mut s = Scanner::new(text.as_bytes(), usize::MAX);
    let _ = s.run();
    s.max
}

struct TooDeep;

/// An open block collection: its indentation, whether it is a mapping, and whether a sequence
/// runs at its own indentation (`key:\n- item`, an extra level).
struct Block {
    column: usize,
    mapping: bool,
    indentless: bool,
}

/// The simple-key candidate of the block level: where a token that may be a mapping key began,
/// and the deepest nesting since (a flow collection as a key is scanned before the block
/// mapping it opens).
#[derive(Clone, Copy)]
struct Key {
    index: usize,
    line: usize,
    column: usize,
    peak: usize,
}

/// An open flow collection; in a sequence, whether a single-pair mapping (`[a: b]`) is open in
/// the current entry.
struct Flow {
    sequence: bool,
    pair: bool,
    /// The deepest nesting reached in the current entry: a key's collections are scanned before
    /// the `:` that makes the entry a single-pair mapping around them.
    entry_peak: usize,
}

struct Scanner<'a> {
    b: &'a [u8],
    /// Byte offset, as libyaml-rs's `mark.index`.
    i: usize,
    /// Characters since the line began, as libyaml's `mark.column`.
    column: usize,
    line: usize,
    /// The flow level: collections open in flow style.
    flow: usize,
    flows: Vec<Flow>,
    blocks: Vec<Block>,
    /// Collections open now.
    depth: usize,
    max: usize,
    limit: usize,
    simple_key_allowed: bool,
    key: Option<Key>,
}

impl<'a> Scanner<'a> {
    fn new(b: &'a [u8], limit: usize) -> Self {
        Self {
            b,
            i: 0,
            column: 0,
            line: 0,
            flow: 0,
            flows: Vec::new(),
            blocks: Vec::new(),
            depth: 0,
            max: 0,
            limit,
            // libyaml's stream start allows a simple key.
            simple_key_allowed: true,
            key: None,
        }
    }

    fn at(&self, k: usize) -> u8 {
        self.b.get(self.i + k).copied().unwrap_or(0)
    }

    /// The end of the input (libyaml's buffer ends with NUL; a NUL inside is an error there).
    fn z(&self, k: usize) -> bool {
        self.at(k) == 0
    }

    fn blank(&self, k: usize) -> bool {
        matches!(self.at(k), b' ' | b'\t')
    }

    fn brk(&self, k: usize) -> bool {
        match self.at(k) {
            b'\r' | b'\n' => true,
            0xc2 => self.at(k + 1) == 0x85,
            0xe2 => self.at(k + 1) == 0x80 && matches!(self.at(k + 2), 0xa8 | 0xa9),
            _ => false,
        }
    }

    fn breakz(&self, k: usize) -> bool {
        self.brk(k) || self.z(k)
    }

    fn blankz(&self, k: usize) -> bool {
        self.blank(k) || self.breakz(k)
    }

    /// libyaml's `IS_ALPHA`: anchor, alias and tag-handle characters.
    fn alpha(&self, k: usize) -> bool {
        let c = self.at(k);
        c.is_ascii_alphanumeric() || c == b'_' || c == b'-'
    }

    /// A tag URI character; `,`, `[` and `]` only in a verbatim tag (`!<…>`).
    fn uri(&self, k: usize, verbatim: bool) -> bool {
        self.alpha(k)
            || matches!(
                self.at(k),
                b';' | b'/'
                    | b'?'
                    | b':'
                    | b'@'
                    | b'&'
                    | b'='
                    | b'+'
                    | b'$'
                    | b'.'
                    | b'%'
                    | b'!'
                    | b'~'
                    | b'*'
                    | b'\''
                    | b'('
                    | b')'
            )
            || verbatim && matches!(self.at(k), b',' | b'[' | b']')
    }

    /// `---` or `...` at the start of a line, then a blank or the end of the line.
    fn document_indicator(&self) -> bool {
        self.column == 0
            && (self.b[self.i..].starts_with(b"---") || self.b[self.i..].starts_with(b"..."))
            && self.blankz(3)
    }

    /// One character forward.
    fn skip(&mut self) {
        let width = match self.at(0) {
            0xc0..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf7 => 4,
            _ => 1,
        };
        self.i = (self.i + width).min(self.b.len());
        self.column += 1;
    }

    /// Over a line break.
    fn skip_line(&mut self) {
        let width = if self.at(0) == b'\r' && self.at(1) == b'\n' {
            2
        } else {
            match self.at(0) {
                0xc2 => 2,
                0xe2 => 3,
                _ => 1,
            }
        };
        self.i = (self.i + width).min(self.b.len());
        self.column = 0;
        self.line += 1;
    }

    fn open(&mut self) -> Result<(), TooDeep> {
        self.depth += 1;
        self.reached(self.depth)
    }

    fn reached(&mut self, depth: usize) -> Result<(), TooDeep> {
        self.max = self.max.max(depth);
        if let Some(k) = &mut self.key {
            k.peak = k.peak.max(depth);
        }
        // At most `limit` + 1 flows are open (one more is refused), so this stays bounded.
        for f in &mut self.flows {
            f.entry_peak = f.entry_peak.max(depth);
        }
        if depth > self.limit {
            return Err(TooDeep);
        }
        Ok(())
    }

    fn indent(&self) -> Option<usize> {
        self.blocks.last().map(|b| b.column)
    }

    /// libyaml's `roll_indent`: a block collection opens at `column` if it is deeper than the
    /// current one (`true`). A sequence entry at a mapping's own indentation is the parser's
    /// indentless sequence; a key there ends it.
    fn roll(&mut self, column: usize, mapping: bool) -> Result<bool, TooDeep> {
        if self.flow > 0 {
            return Ok(false);
        }
        match self.blocks.last_mut() {
            Some(top) if top.column >= column => {
                if top.column == column && top.mapping {
                    if !mapping && !top.indentless {
                        top.indentless = true;
                        self.open()?;
                    } else if mapping && top.indentless {
                        top.indentless = false;
                        self.depth -= 1;
                    }
                }
                Ok(false)
            }
            _ => {
                self.blocks.push(Block {
                    column,
                    mapping,
                    indentless: false,
                });
                self.open()?;
                Ok(true)
            }
        }
    }

    /// libyaml's `unroll_indent`: block collections deeper than `column` end (`None`: all).
    fn unroll(&mut self, column: Option<usize>) {
        if self.flow > 0 {
            return;
        }
        while let Some(top) = self.blocks.last() {
            if column.is_some_and(|c| top.column <= c) {
                break;
            }
            self.depth -= 1 + usize::from(top.indentless);
            self.blocks.pop();
        }
    }

    /// A key or a value in a flow sequence's entry makes it a single-pair mapping, a level of
    /// its own.
    fn pair(&mut self) -> Result<(), TooDeep> {
        match self.flows.last_mut() {
            Some(f) if f.sequence && !f.pair => {
                f.pair = true;
                let peak = f.entry_peak;
                self.open()?;
                // The entry's key, scanned before, was inside the new mapping.
                self.reached(peak + 1)
            }
            _ => Ok(()),
        }
    }

    fn save_key(&mut self) {
        if self.flow == 0 && self.simple_key_allowed {
            self.key = Some(Key {
                index: self.i,
                line: self.line,
                column: self.column,
                peak: self.depth,
            });
        }
    }

    fn remove_key(&mut self) {
        if self.flow == 0 {
            self.key = None;
        }
    }

    fn run(&mut self) -> Result<(), TooDeep> {
        loop {
            self.skip_to_next_token();
            if let Some(k) = self.key
                && (k.line < self.line || k.index + 1024 < self.i)
            {
                self.key = None;
            }
            self.unroll(Some(self.column));
            if self.z(0) {
                return Ok(());
            }
            let c = self.at(0);
            if self.column == 0 && c == b'%' {
                // A directive, to the end of its line.
                self.unroll(None);
                self.remove_key();
                self.simple_key_allowed = false;
                while !self.breakz(0) {
                    self.skip();
                }
            } else if self.document_indicator() {
                self.unroll(None);
                self.remove_key();
                self.simple_key_allowed = false;
                self.i += 3;
                self.column += 3;
            } else if c == b'[' || c == b'{' {
                self.save_key();
                self.flow += 1;
                self.flows.push(Flow {
                    sequence: c == b'[',
                    pair: false,
                    entry_peak: 0,
                });
                self.simple_key_allowed = true;
                self.skip();
                self.open()?;
            } else if c == b']' || c == b'}' {
                self.remove_key();
                if let Some(f) = self.flows.pop() {
                    self.flow -= 1;
                    self.depth -= 1 + usize::from(f.pair);
                }
                self.simple_key_allowed = false;
                self.skip();
            } else if c == b',' {
                self.remove_key();
                if let Some(f) = self.flows.last_mut()
                    && f.pair
                {
                    f.pair = false;
                    self.depth -= 1;
                }
                let depth = self.depth;
                if let Some(f) = self.flows.last_mut() {
                    f.entry_peak = depth;
                }
                self.simple_key_allowed = true;
                self.skip();
            } else if c == b'-' && self.blankz(1) {
                self.roll(self.column, false)?;
                self.remove_key();
                self.simple_key_allowed = true;
                self.skip();
            } else if c == b'?' && (self.flow > 0 || self.blankz(1)) {
                self.pair()?;
                self.roll(self.column, true)?;
                self.remove_key();
                self.simple_key_allowed = self.flow == 0;
                self.skip();
            } else if c == b':' && (self.flow > 0 || self.blankz(1)) {
                self.pair()?;
                match self.key.take() {
                    Some(k) if self.flow == 0 => {
                        if self.roll(k.column, true)? {
                            // The key's own collections were inside the new mapping.
                            self.reached(k.peak + 1)?;
                        }
                        self.simple_key_allowed = false;
                    }
                    key => {
                        self.key = key;
                        self.roll(self.column, true)?;
                        self.simple_key_allowed = self.flow == 0 && key.is_none();
                    }
                }
                self.skip();
            } else if c == b'*' || c == b'&' {
                self.save_key();
                self.simple_key_allowed = false;
                self.skip();
                while self.alpha(0) {
                    self.skip();
                }
            } else if c == b'!' {
                self.save_key();
                self.simple_key_allowed = false;
                self.tag();
            } else if (c == b'|' || c == b'>') && self.flow == 0 {
                self.remove_key();
                self.simple_key_allowed = true;
                self.block_scalar();
            } else if c == b'\'' || c == b'"' {
                self.save_key();
                self.simple_key_allowed = false;
                self.quoted(c == b'\'');
            } else if self.plain_start() {
                self.save_key();
                self.simple_key_allowed = false;
                self.plain();
            } else {
                // No token starts here: libyaml stops.
                self.skip();
            }
        }
    }

    /// libyaml's `scan_to_next_token`: spaces, tabs where they are not indentation, comments
    /// and line breaks.
    fn skip_to_next_token(&mut self) {
        loop {
            if self.column == 0 && self.b[self.i..].starts_with("\u{feff}".as_bytes()) {
                self.skip();
            }
            while self.at(0) == b' '
                || (self.flow > 0 || !self.simple_key_allowed) && self.at(0) == b'\t'
            {
                self.skip();
            }
            if self.at(0) == b'#' {
                while !self.breakz(0) {
                    self.skip();
                }
            }
            if !self.brk(0) {
                return;
            }
            self.skip_line();
            if self.flow == 0 {
                self.simple_key_allowed = true;
            }
        }
    }

    fn plain_start(&self) -> bool {
        let c = self.at(0);
        !(self.blankz(0) || b"-?:,[]{}#&*!|>'\"%@`".contains(&c))
            || c == b'-' && !self.blank(1)
            || self.flow == 0 && (c == b'?' || c == b':') && !self.blankz(1)
    }

    /// libyaml's `scan_tag`: `!<uri>`, or `!`, a handle and a suffix.
    fn tag(&mut self) {
        if self.at(1) == b'<' {
            self.skip();
            self.skip();
            while self.uri(0, true) {
                self.skip();
            }
            if self.at(0) == b'>' {
                self.skip();
            }
        } else {
            self.skip();
            while self.uri(0, false) {
                self.skip();
            }
        }
    }

    /// libyaml's `scan_plain_scalar`.
    fn plain(&mut self) {
        let indent = self.indent().map_or(0, |i| i + 1);
        let mut leading_blanks = false;
        loop {
            if self.document_indicator() || self.at(0) == b'#' {
                break;
            }
            while !self.blankz(0) {
                let c = self.at(0);
                if self.flow > 0 && c == b':' && b",?[]{}".contains(&self.at(1)) {
                    // An error in libyaml.
                    return;
                }
                if c == b':' && self.blankz(1) || self.flow > 0 && b",[]{}".contains(&c) {
                    break;
                }
                leading_blanks = false;
                self.skip();
            }
            if !(self.blank(0) || self.brk(0)) {
                break;
            }
            while self.blank(0) || self.brk(0) {
                if self.blank(0) {
                    if leading_blanks && self.column < indent && self.at(0) == b'\t' {
                        // An error in libyaml.
                        return;
                    }
                    self.skip();
                } else {
                    self.skip_line();
                    leading_blanks = true;
                }
            }
            if self.flow == 0 && self.column < indent {
                break;
            }
        }
        if leading_blanks {
            self.simple_key_allowed = true;
        }
    }

    /// libyaml's `scan_flow_scalar`: a single- or double-quoted scalar, over lines.
    fn quoted(&mut self, single: bool) {
        let quote = if single { b'\'' } else { b'"' };
        self.skip();
        loop {
            if self.document_indicator() || self.z(0) {
                // An error in libyaml.
                return;
            }
            while !self.blankz(0) {
                let c = self.at(0);
                if single && c == b'\'' && self.at(1) == b'\'' {
                    self.skip();
                    self.skip();
                } else if c == quote {
                    break;
                } else if !single && c == b'\\' && self.brk(1) {
                    self.skip();
                    self.skip_line();
                    break;
                } else if !single && c == b'\\' {
                    let digits = match self.at(1) {
                        b'x' => 2,
                        b'u' => 4,
                        b'U' => 8,
                        b'0' | b'a' | b'b' | b't' | b'\t' | b'n' | b'v' | b'f' | b'r' | b'e'
                        | b' ' | b'"' | b'/' | b'\\' | b'N' | b'_' | b'L' | b'P' => 0,
                        // An error in libyaml.
                        _ => return,
                    };
                    self.skip();
                    self.skip();
                    for _ in 0..digits {
                        if !self.at(0).is_ascii_hexdigit() {
                            return;
                        }
                        self.skip();
                    }
                } else {
                    self.skip();
                }
            }
            if self.at(0) == quote {
                self.skip();
                return;
            }
            while self.blank(0) || self.brk(0) {
                if self.blank(0) {
                    self.skip();
                } else {
                    self.skip_line();
                }
            }
        }
    }

    /// libyaml's `scan_block_scalar`: the header, then every line indented at least as much as
    /// the content (given by the header, else by the first line that is not empty).
    fn block_scalar(&mut self) {
        self.skip();
        let mut increment = 0;
        for _ in 0..2 {
            match self.at(0) {
                b'+' | b'-' => self.skip(),
                // An error in libyaml.
                b'0' => return,
                c @ b'1'..=b'9' if increment == 0 => {
                    increment = usize::from(c - b'0');
                    self.skip();
                }
                _ => break,
            }
        }
        while self.blank(0) {
            self.skip();
        }
        if self.at(0) == b'#' {
            while !self.breakz(0) {
                self.skip();
            }
        }
        if !self.breakz(0) {
            // An error in libyaml.
            return;
        }
        if self.brk(0) {
            self.skip_line();
        }
        let mut indent = match (increment, self.indent()) {
            (0, _) => 0,
            (n, Some(i)) => i + n,
            (n, None) => n,
        };
        if !self.block_breaks(&mut indent) {
            return;
        }
        while self.column == indent && !self.z(0) {
            while !self.breakz(0) {
                self.skip();
            }
            if self.brk(0) {
                self.skip_line();
            }
            if !self.block_breaks(&mut indent) {
                return;
            }
        }
    }

    /// libyaml's `scan_block_scalar_breaks`: empty lines and indentation; sets an undetermined
    /// (0) indentation. `false` where libyaml stops with an error.
    fn block_breaks(&mut self, indent: &mut usize) -> bool {
        let mut max_indent = 0;
        loop {
            while (*indent == 0 || self.column < *indent) && self.at(0) == b' ' {
                self.skip();
            }
            max_indent = max_indent.max(self.column);
            if (*indent == 0 || self.column < *indent) && self.at(0) == b'\t' {
                return false;
            }
            if !self.brk(0) {
                break;
            }
            self.skip_line();
        }
        if *indent == 0 {
            *indent = max_indent.max(self.indent().map_or(0, |i| i + 1)).max(1);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_flow_and_block_collections() {
        for (text, depth) in [
            ("", 0),
            ("a\n", 0),
            ("a: 1\n", 1),
            ("[]", 1),
            ("[[a], {b: [c]}]", 3),
            ("a:\n  b:\n    c: 1\n", 3),
            (
                "zones:\n  z:\n    tlsrpt: yes\ncache: {options: {cache_size: 10}}\n",
                3,
            ),
            ("- - - a\n", 3),
            // An indentless sequence is a level of its own.
            ("a:\n- b:\n  - c\n", 4),
            ("a:\n- x\nb:\n  c: 1\n", 2),
            ("resolvers: [127.0.0.1, '::1']\n", 2),
            ("? [a]\n: {b: c}\n", 2),
            ("[a, b]: c\n", 2),
            ("--- [a]\n--- {b: [c]}\n", 2),
            // A pair in a flow sequence is a mapping of its own.
            ("[a: b, c, ? d]", 2),
            ("[a: [b: [c]]]", 5),
            ("{a: [b, c]}", 2),
            // A collection as the key of such a pair is inside that mapping (found by the
            // config fuzz target: the check counted one level short).
            ("[[[x]]: o]", 4),
            ("[[a]: [b]]", 3),
            ("[a, [[b]]: c]", 4),
        ] {
            assert_eq!(max_depth(text), depth, "{text:?}");
        }
    }

    #[test]
    fn brackets_in_scalars_comments_and_tags_do_not_count() {
        for (text, depth) in [
            ("a: '[[[[ ]]'\n", 1),
            ("a: \"{{ \\\" [[\"\n", 1),
            ("a: b[[[c\n", 1),
            ("a: don't [[[\n", 1),
            ("a: |\n  [[[[\n  {{{{\nb: 1\n", 1),
            ("a: >-\n    [[[\n\n    ]]\n", 1),
            ("# [[[[\na: 1 # {{{{\n", 1),
            ("a: !<tag:[x]> b\n", 1),
            ("a: 'it''s [[' \n", 1),
            ("a: \"multi\n  line [[[ \"\n", 1),
        ] {
            assert_eq!(max_depth(text), depth, "{text:?}");
        }
    }

    #[test]
    fn closing_brackets_in_scalars_do_not_hide_open_collections() {
        // A `]` inside a quoted scalar, or behind libyaml's comment rule, closes nothing.
        let text = "[ ']', [ \"]\", [ ']]', [x]]]]";
        assert_eq!(max_depth(text), 4);
        assert_eq!(max_depth("[a,#]\n[[]]"), 3);
        assert_eq!(max_depth("a: b '\nc: [[[[]]]]\n"), 5);
    }

    #[test]
    fn check_names_the_line_past_the_limit() {
        assert_eq!(check("a:\n  b: [[c]]\n", 4), Ok(()));
        assert_eq!(check("a:\n  b: [[[c]]]\n", 4), Err(2));
        let deep = format!("{}{}", "{a: ".repeat(30_000), "}".repeat(30_000));
        assert_eq!(check(&deep, 64), Err(1));
    }
}
