//! Go source text for one generated file: a struct with methods, an
//! interface and its in-memory implementation, calls into the packages it
//! imports, generic helpers, and a test file per package. The emitter
//! records the positions of the symbols the editor script requests.

use std::fmt::Write as _;

use crate::rng::SplitMix64;

/// Request the editor script sends at a recorded position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeKind {
    Hover,
    Definition,
    Completion,
    References,
}

impl ProbeKind {
    pub const ALL: [ProbeKind; 4] = [
        ProbeKind::Hover,
        ProbeKind::Definition,
        ProbeKind::Completion,
        ProbeKind::References,
    ];

    /// The LSP method the probe sends.
    pub fn method(self) -> &'static str {
        match self {
            ProbeKind::Hover => "textDocument/hover",
            ProbeKind::Definition => "textDocument/definition",
            ProbeKind::Completion => "textDocument/completion",
            ProbeKind::References => "textDocument/references",
        }
    }
}

/// One package of the plan: its name, one exported type per file, and the
/// packages it imports (always lower indices, so imports never cycle).
#[derive(Debug, Clone)]
pub struct PackagePlan {
    pub name: String,
    pub types: Vec<String>,
    pub deps: Vec<usize>,
}

/// Source text plus byte offsets of the probes in it.
#[derive(Debug, Default)]
pub struct Emitted {
    pub text: String,
    pub probes: Vec<(ProbeKind, usize)>,
}

impl Emitted {
    fn line(&mut self, text: &str) {
        self.text.push_str(text);
        self.text.push('\n');
    }

    /// Writes a line and records a probe at the first `needle` in it, moved
    /// `shift` bytes to the right.
    fn probed_line(&mut self, text: &str, probes: &[(ProbeKind, &str, usize)]) {
        let start = self.text.len();
        for &(kind, needle, shift) in probes {
            let at = text
                .find(needle)
                .unwrap_or_else(|| panic!("{needle:?} not in generated line {text:?}"));
            self.probes.push((kind, start + at + shift));
        }
        self.line(text);
    }
}

/// Emits file `file` of package `index` under module path `module`.
pub fn emit_file(
    plan: &[PackagePlan],
    module: &str,
    index: usize,
    file: usize,
    rng: &mut SplitMix64,
) -> Emitted {
    let package = &plan[index];
    let ty = &package.types[file];
    let receiver = "x";
    let mut out = Emitted::default();

    if file == 0 {
        out.line(&format!(
            "// Package {} keeps {} records and the stores that hold them.",
            package.name,
            package.types.join(", ")
        ));
    }
    out.line(&format!("package {}", package.name));
    out.line("");
    out.line("import (");
    for std in ["errors", "fmt", "sort", "strings", "sync"] {
        out.line(&format!("\t\"{std}\""));
    }
    if !package.deps.is_empty() {
        out.line("");
        let mut imports: Vec<&str> = package
            .deps
            .iter()
            .map(|&d| plan[d].name.as_str())
            .collect();
        imports.sort_unstable();
        for name in imports {
            out.line(&format!("\t\"{module}/pkg/{name}\""));
        }
    }
    out.line(")");
    out.line("");

    out.line(&format!(
        "// Err{ty}NotFound is returned when a {ty} lookup misses."
    ));
    out.line(&format!(
        "var Err{ty}NotFound = errors.New(\"{}: {} not found\")",
        package.name,
        ty.to_lowercase()
    ));
    out.line("");

    // The record type, with one link field per imported package.
    out.line(&format!(
        "// {ty} is a named record with counters and tags."
    ));
    out.probed_line(
        &format!("type {ty} struct {{"),
        &[(ProbeKind::Hover, ty.as_str(), 1)],
    );
    out.line("\tmu     sync.Mutex");
    out.line("\tID     int");
    out.line("\tName   string");
    out.line("\tTags   []string");
    out.line("\tcounts map[string]int");
    for (k, &d) in package.deps.iter().enumerate() {
        out.line(&format!(
            "\tLink{k}  *{}.{}",
            plan[d].name, plan[d].types[0]
        ));
    }
    out.line("}");
    out.line("");

    out.line(&format!("// New{ty} returns an empty {ty} called name."));
    out.line(&format!("func New{ty}(name string) *{ty} {{"));
    out.line(&format!(
        "\treturn &{ty}{{Name: name, counts: make(map[string]int)}}"
    ));
    out.line("}");
    out.line("");

    out.line("// Add records n more units under key; n must not be negative.");
    out.line(&format!(
        "func ({receiver} *{ty}) Add(key string, n int) error {{"
    ));
    out.line("\tif n < 0 {");
    out.line(&format!(
        "\t\treturn fmt.Errorf(\"{}: negative amount %d for %q\", n, key)",
        package.name
    ));
    out.line("\t}");
    out.line(&format!("\t{receiver}.mu.Lock()"));
    out.line(&format!("\tdefer {receiver}.mu.Unlock()"));
    out.line(&format!("\t{receiver}.counts[key] += n"));
    out.line("\treturn nil");
    out.line("}");
    out.line("");

    out.line("// Total returns the sum of all recorded units.");
    out.probed_line(
        &format!("func ({receiver} *{ty}) Total() int {{"),
        &[(ProbeKind::References, "Total", 1)],
    );
    out.line(&format!("\t{receiver}.mu.Lock()"));
    out.line(&format!("\tdefer {receiver}.mu.Unlock()"));
    out.line("\ttotal := 0");
    out.line(&format!("\tfor _, n := range {receiver}.counts {{"));
    out.line("\t\ttotal += n");
    out.line("\t}");
    out.line("\treturn total");
    out.line("}");
    out.line("");

    out.line("// Keys returns the recorded keys in sorted order.");
    out.line(&format!("func ({receiver} *{ty}) Keys() []string {{"));
    out.line(&format!("\t{receiver}.mu.Lock()"));
    out.line(&format!("\tdefer {receiver}.mu.Unlock()"));
    out.line(&format!(
        "\tkeys := make([]string, 0, len({receiver}.counts))"
    ));
    out.line(&format!("\tfor k := range {receiver}.counts {{"));
    out.line("\t\tkeys = append(keys, k)");
    out.line("\t}");
    out.line("\tsort.Strings(keys)");
    out.line("\treturn keys");
    out.line("}");
    out.line("");

    out.line("// Describe renders the record and the first record it links to.");
    out.line(&format!("func ({receiver} *{ty}) Describe() string {{"));
    out.line("\tvar b strings.Builder");
    out.line("\tseen := NewSet[string]()");
    out.probed_line(
        &format!("\tupper := Map({receiver}.Keys(), strings.ToUpper)"),
        &[(ProbeKind::Definition, "Map", 1)],
    );
    out.line(&format!(
        "\tfmt.Fprintf(&b, \"%s(%d): %s\", {receiver}.Name, {receiver}.ID, strings.Join(upper, \",\"))"
    ));
    out.line(&format!("\tfor _, tag := range {receiver}.Tags {{"));
    out.line("\t\tif !seen.Has(tag) {");
    out.line("\t\t\tseen.Add(tag)");
    out.line("\t\t\tb.WriteString(\" #\" + tag)");
    out.line("\t\t}");
    out.line("\t}");
    if !package.deps.is_empty() {
        out.line(&format!("\tif {receiver}.Link0 != nil {{"));
        out.line("\t\tb.WriteString(\" -> \")");
        out.line(&format!("\t\tb.WriteString({receiver}.Link0.Describe())"));
        out.line("\t}");
    }
    out.line("\treturn b.String()");
    out.line("}");
    out.line("");

    // Calls into every imported package: constructors, methods, generics.
    out.line("// Sync links the record to fresh records of the packages it imports.");
    out.line(&format!("func ({receiver} *{ty}) Sync() error {{"));
    if package.deps.is_empty() {
        out.line(&format!("\tif {receiver}.Total() < 0 {{"));
        out.line(&format!("\t\treturn Err{ty}NotFound"));
        out.line("\t}");
    } else {
        out.line(&format!("\ttotal := {receiver}.Total()"));
    }
    for (k, &d) in package.deps.iter().enumerate() {
        let dep = &plan[d];
        let dep_ty = &dep.types[0];
        let new_call = format!("\tlink{k} := {}.New{dep_ty}({receiver}.Name)", dep.name);
        if k == 0 {
            out.probed_line(
                &new_call,
                &[
                    (ProbeKind::Hover, "New", 1),
                    (ProbeKind::Definition, "New", 1),
                ],
            );
            let add = format!(
                "\tif err := link{k}.Add(\"{}\", total); err != nil {{",
                package.name
            );
            let dot = format!("link{k}.");
            out.probed_line(&add, &[(ProbeKind::Completion, &dot, dot.len())]);
        } else {
            out.line(&new_call);
            out.line(&format!(
                "\tif err := link{k}.Add(\"{}\", total); err != nil {{",
                package.name
            ));
        }
        out.line(&format!(
            "\t\treturn fmt.Errorf(\"sync %s: %w\", {receiver}.Name, err)"
        ));
        out.line("\t}");
        out.line(&format!("\tif link{k}.Total() < total {{"));
        out.line(&format!("\t\treturn Err{ty}NotFound"));
        out.line("\t}");
        out.line(&format!("\t{receiver}.Link{k} = link{k}"));
        out.line(&format!(
            "\tnames{k} := {dn}.Map([]*{dn}.{dep_ty}{{link{k}}}, func(v *{dn}.{dep_ty}) string {{ return v.Describe() }})",
            dn = dep.name
        ));
        out.line(&format!(
            "\t{receiver}.Tags = append({receiver}.Tags, names{k}...)"
        ));
    }
    out.line("\treturn nil");
    out.line("}");
    out.line("");

    // An interface and its in-memory implementation.
    out.line(&format!("// {ty}Store loads and saves {ty} records."));
    out.line(&format!("type {ty}Store interface {{"));
    out.line(&format!("\tGet(id int) (*{ty}, error)"));
    out.line(&format!("\tPut(x *{ty}) error"));
    out.line(&format!("\tList() []*{ty}"));
    out.line("}");
    out.line("");
    let store = format!("mem{ty}Store");
    out.line(&format!("type {store} struct {{"));
    out.line("\tmu   sync.RWMutex");
    out.line(&format!("\tbyID map[int]*{ty}"));
    out.line("}");
    out.line("");
    out.line(&format!(
        "// New{ty}Store returns an empty in-memory {ty}Store."
    ));
    out.line(&format!("func New{ty}Store() {ty}Store {{"));
    out.line(&format!("\treturn &{store}{{byID: make(map[int]*{ty})}}"));
    out.line("}");
    out.line("");
    out.line(&format!("func (s *{store}) Get(id int) (*{ty}, error) {{"));
    out.line("\ts.mu.RLock()");
    out.line("\tdefer s.mu.RUnlock()");
    out.line("\tx, ok := s.byID[id]");
    out.line("\tif !ok {");
    out.line(&format!(
        "\t\treturn nil, fmt.Errorf(\"id %d: %w\", id, Err{ty}NotFound)"
    ));
    out.line("\t}");
    out.line("\treturn x, nil");
    out.line("}");
    out.line("");
    out.line(&format!("func (s *{store}) Put(x *{ty}) error {{"));
    out.line("\tif x == nil {");
    out.line(&format!(
        "\t\treturn errors.New(\"{}: nil {}\")",
        package.name,
        ty.to_lowercase()
    ));
    out.line("\t}");
    out.line("\ts.mu.Lock()");
    out.line("\tdefer s.mu.Unlock()");
    out.line("\ts.byID[x.ID] = x");
    out.line("\treturn nil");
    out.line("}");
    out.line("");
    out.line(&format!("func (s *{store}) List() []*{ty} {{"));
    out.line("\ts.mu.RLock()");
    out.line("\tdefer s.mu.RUnlock()");
    out.line(&format!("\tall := make([]*{ty}, 0, len(s.byID))"));
    out.line("\tfor _, x := range s.byID {");
    out.line("\t\tall = append(all, x)");
    out.line("\t}");
    out.line(&format!(
        "\tall = Filter(all, func(x *{ty}) bool {{ return x.Name != \"\" }})"
    ));
    out.line("\tsort.Slice(all, func(i, j int) bool { return all[i].ID < all[j].ID })");
    out.line("\treturn all");
    out.line("}");
    out.line("");

    // Plain functions of varying number and length, so files differ in size.
    for k in 0..rng.between(2, 6) {
        emit_score_function(&mut out, ty, k, rng);
    }

    if file == 0 {
        emit_generics(&mut out);
    }
    out
}

fn emit_score_function(out: &mut Emitted, ty: &str, k: usize, rng: &mut SplitMix64) {
    out.line(&format!(
        "// Score{ty}{k} weighs values by their position; it never panics on an empty slice."
    ));
    out.line(&format!(
        "func Score{ty}{k}(values []int, weight int) int {{"
    ));
    out.line("\tscore := 0");
    out.line("\tfor i, v := range values {");
    out.line("\t\tswitch {");
    for case in 0..rng.between(2, 5) {
        let modulus = case + 2;
        let factor = rng.between(1, 9);
        out.line(&format!("\t\tcase i%{modulus} == 0:"));
        out.line(&format!("\t\t\tscore += v * {factor} * weight"));
    }
    out.line("\t\tdefault:");
    out.line("\t\t\tscore -= v");
    out.line("\t\t}");
    out.line("\t}");
    out.line("\treturn score");
    out.line("}");
    out.line("");
}

fn emit_generics(out: &mut Emitted) {
    out.text.push_str(
        "// Map applies f to every element of xs.
func Map[T, U any](xs []T, f func(T) U) []U {
\tout := make([]U, 0, len(xs))
\tfor _, x := range xs {
\t\tout = append(out, f(x))
\t}
\treturn out
}

// Filter returns the elements of xs for which keep returns true.
func Filter[T any](xs []T, keep func(T) bool) []T {
\tvar out []T
\tfor _, x := range xs {
\t\tif keep(x) {
\t\t\tout = append(out, x)
\t\t}
\t}
\treturn out
}

// Set is a set of comparable values; the zero value is not usable, call NewSet.
type Set[K comparable] struct {
\tm map[K]struct{}
}

// NewSet returns a set holding items.
func NewSet[K comparable](items ...K) *Set[K] {
\ts := &Set[K]{m: make(map[K]struct{}, len(items))}
\tfor _, item := range items {
\t\ts.Add(item)
\t}
\treturn s
}

// Add inserts k.
func (s *Set[K]) Add(k K) { s.m[k] = struct{}{} }

// Has reports whether k is in the set.
func (s *Set[K]) Has(k K) bool {
\t_, ok := s.m[k]
\treturn ok
}

// Len returns the number of elements.
func (s *Set[K]) Len() int { return len(s.m) }
",
    );
}

/// Emits the package's test file: one test per type, plus the generics.
pub fn emit_test(package: &PackagePlan) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "package {}\n\nimport \"testing\"\n", package.name);
    for ty in &package.types {
        let _ = write!(
            out,
            "func Test{ty}Total(t *testing.T) {{
\tx := New{ty}(\"a\")
\tif err := x.Add(\"k\", 2); err != nil {{
\t\tt.Fatal(err)
\t}}
\tif err := x.Add(\"k\", -1); err == nil {{
\t\tt.Fatal(\"Add accepted a negative amount\")
\t}}
\tif got := x.Total(); got != 2 {{
\t\tt.Fatalf(\"Total() = %d, want 2\", got)
\t}}
\tstore := New{ty}Store()
\tif err := store.Put(x); err != nil {{
\t\tt.Fatal(err)
\t}}
\tif _, err := store.Get(x.ID + 1); err == nil {{
\t\tt.Fatal(\"Get found a missing id\")
\t}}
\tif got := len(store.List()); got != 1 {{
\t\tt.Fatalf(\"List() has %d records, want 1\", got)
\t}}
}}

"
        );
    }
    let _ = write!(
        out,
        "func TestMapFilterSet(t *testing.T) {{
\tdoubled := Map([]int{{1, 2, 3}}, func(v int) int {{ return v * 2 }})
\teven := Filter(doubled, func(v int) bool {{ return v%4 == 0 }})
\tif len(even) != 1 || even[0] != 4 {{
\t\tt.Fatalf(\"Filter = %v, want [4]\", even)
\t}}
\tif s := NewSet(\"a\", \"b\", \"a\"); s.Len() != 2 || !s.Has(\"b\") {{
\t\tt.Fatal(\"Set lost or duplicated an element\")
\t}}
}}
"
    );
    out
}
