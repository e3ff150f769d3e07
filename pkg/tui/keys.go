package tui

import "github.com/charmbracelet/bubbles/key"

// keyMap is the one list of keys: Update matches against it and the footer and the
// help screen are drawn from it, so a key cannot work without being shown or be shown
// without working. Keys that do nothing in the current stage are disabled, which hides
// them from the help too.
type keyMap struct {
	Left, Right, Up, Down, PageUp, PageDown key.Binding
	Detail, Filter, Mark, Tier, VMSel       key.Binding
	Target, Plan, Move, Cancel, Back        key.Binding
	History, Nodes, Help, Quit              key.Binding
}

func newKeyMap() keyMap {
	return keyMap{
		Left:     key.NewBinding(key.WithKeys("left", "h", "shift+tab"), key.WithHelp("←/h", "site")),
		Right:    key.NewBinding(key.WithKeys("right", "l", "tab"), key.WithHelp("→/l", "site")),
		Up:       key.NewBinding(key.WithKeys("up", "k"), key.WithHelp("↑/k", "up")),
		Down:     key.NewBinding(key.WithKeys("down", "j"), key.WithHelp("↓/j", "down")),
		PageUp:   key.NewBinding(key.WithKeys("pgup", "ctrl+u"), key.WithHelp("pgup", "page up")),
		PageDown: key.NewBinding(key.WithKeys("pgdown", "ctrl+d"), key.WithHelp("pgdn", "page down")),
		Detail:   key.NewBinding(key.WithKeys("enter"), key.WithHelp("enter", "detail")),
		Nodes:    key.NewBinding(key.WithKeys("n"), key.WithHelp("n", "nodes")),
		Filter:   key.NewBinding(key.WithKeys("/"), key.WithHelp("/", "filter")),
		Mark:     key.NewBinding(key.WithKeys(" ", "space"), key.WithHelp("space", "mark vm")),
		Tier:     key.NewBinding(key.WithKeys("1", "2", "3", "4", "5", "6", "7", "8", "9"), key.WithHelp("1-9", "tier")),
		VMSel:    key.NewBinding(key.WithKeys("0"), key.WithHelp("0", "marked/cursor vm")),
		Target:   key.NewBinding(key.WithKeys("t"), key.WithHelp("t", "target")),
		Plan:     key.NewBinding(key.WithKeys("p"), key.WithHelp("p", "plan")),
		Move:     key.NewBinding(key.WithKeys("m"), key.WithHelp("m", "move")),
		Cancel:   key.NewBinding(key.WithKeys("c"), key.WithHelp("c", "cancel move")),
		History:  key.NewBinding(key.WithKeys("H"), key.WithHelp("H", "history")),
		Back:     key.NewBinding(key.WithKeys("esc"), key.WithHelp("esc", "back")),
		Help:     key.NewBinding(key.WithKeys("?"), key.WithHelp("?", "help")),
		Quit:     key.NewBinding(key.WithKeys("q", "ctrl+c"), key.WithHelp("q", "quit")),
	}
}

// ShortHelp is the footer, less help and quit, which the footer always shows.
func (k keyMap) ShortHelp() []key.Binding {
	return []key.Binding{k.Move, k.Plan, k.Nodes, k.Tier, k.Target, k.Mark, k.Cancel, k.Back, k.Detail, k.Filter, k.History}
}

// FullHelp is the help screen, a column per group.
func (k keyMap) FullHelp() [][]key.Binding {
	return [][]key.Binding{
		{k.Left, k.Right, k.Up, k.Down, k.PageUp, k.PageDown},
		{k.Detail, k.Nodes, k.Filter, k.Mark, k.Tier, k.VMSel, k.Target},
		{k.Plan, k.Move, k.Cancel, k.Back, k.History, k.Help, k.Quit},
	}
}
