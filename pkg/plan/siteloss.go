package plan

import (
	"fmt"
	"strings"

	"github.com/sitefail/kubectl-sitefail/pkg/siteloss"
	"github.com/sitefail/kubectl-sitefail/pkg/snapshot"
)

// undeclare names the fix for a site wrongly taken for a witness.
func undeclare(s *snapshot.Snapshot, site, why string) string {
	if why == snapshot.Declared {
		return fmt.Sprintf("; if %s is a data site, drop it from --witness-site and the config file's witnessSites", site)
	}
	return fmt.Sprintf("; if %s is a data site, remove those labels from its nodes, or give it a node that runs workloads", site)
}

// siteLossIssues says, for each source site of the plan, what losing it costs beyond its
// VMs:
//   - etcd quorum, for a source that is alive (a relocation, a drill): if losing it
//     leaves fewer voting members than a quorum, the next incident is one this tool
//     cannot handle. A dead source whose API server answers has kept or regained a
//     quorum, so nothing is said. Members that could not be counted are a warning when
//     the plan has work; a cluster without etcd static pods (external etcd) is silent;
//   - automatic remediation, from medik8s NodeHealthChecks: a failover's source that no
//     NHC will remediate is a warning (nothing fences its nodes by itself); everything
//     else is a note. A cluster without NHCs says nothing.
func siteLossIssues(s *snapshot.Snapshot, p *Plan) {
	if s.Etcd != nil && s.Etcd.Unread != "" && p.Work() {
		p.Warnings = append(p.Warnings, Issue{Code: "QuorumUnchecked",
			Message: "etcd members could not be counted (" + s.Etcd.Unread + "): whether losing a source site would cost the API server its quorum is unknown; grant list on pods in kube-system and openshift-etcd (deploy/rbac/sitefail-viewer.yaml)"})
	}
	for _, site := range p.SourceSites {
		if s.SiteAlive(site) {
			if q := siteloss.QuorumIfLost(s, site); q.Known && q.Lost {
				p.Warnings = append(p.Warnings, Issue{Code: "QuorumAtRisk", Message: q.Describe(site)})
			}
		}
	}
	nhc := s.NodeHealthChecks
	if nhc == nil || (nhc.Unread == "" && len(nhc.Objects) == 0) || len(p.SourceSites) == 0 {
		return
	}
	if nhc.Unread != "" {
		p.Notes = append(p.Notes, Issue{Code: "RemediationUnchecked",
			Message: "NodeHealthChecks could not be read (" + nhc.Unread + "): whether a source site's loss is remediated automatically is unknown; grant list on nodehealthchecks.remediation.medik8s.io"})
		return
	}
	for _, site := range p.SourceSites {
		dead := !s.SiteAlive(site)
		rs := siteloss.RemediationIfLost(s, site)
		var will, wont []string
		for _, r := range rs {
			line := "NodeHealthCheck " + r.NodeHealthCheck + ": " + r.Reason
			if r.Remediated {
				will = append(will, line)
			} else {
				wont = append(wont, line)
			}
		}
		prefix := "if " + site + " is lost, its loss"
		if dead {
			prefix = "the loss of " + site
		}
		switch {
		case len(rs) == 0:
			p.Notes = append(p.Notes, Issue{Code: "SiteLossNotRemediated",
				Message: fmt.Sprintf("%s will not be remediated automatically: no NodeHealthCheck selects a node of it", prefix)})
		case len(wont) > 0:
			msg := fmt.Sprintf("%s will not be remediated automatically: %s", prefix, strings.Join(wont, "; "))
			if len(will) > 0 {
				msg = fmt.Sprintf("%s will be remediated automatically only in part: %s; %s", prefix, strings.Join(wont, "; "), strings.Join(will, "; "))
			}
			if dead {
				p.Warnings = append(p.Warnings, Issue{Code: "SiteLossNotRemediated", Message: msg + ": nothing fences its nodes by itself; fence them, then confirm"})
			} else {
				p.Notes = append(p.Notes, Issue{Code: "SiteLossNotRemediated", Message: msg})
			}
		default:
			p.Notes = append(p.Notes, Issue{Code: "SiteLossRemediated",
				Message: fmt.Sprintf("%s will be remediated automatically: %s", prefix, strings.Join(will, "; "))})
		}
	}
}
